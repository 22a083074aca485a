-- Shared by the scenario scripts of idp-bench (bench/README.md); loaded with
-- dofile by each of them. A scenario script defines prepare(dir), which answers
-- the list of ready-made requests (wrk.format strings) it cycles through, and
-- may define accept(body), a check of a 2xx body. The driver passes the
-- directory of its data files after `--`.
--
-- Every response that is not 2xx, or that accept() refuses, counts as bad; at
-- the end one line `IDP_BENCH_RESULT {json}` reports the run to the driver.

local threads = {}
local thread_count = 0

-- Runs in wrk's main Lua state, once per thread, before init().
function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_index", thread_count)
  table.insert(threads, thread)
end

-- The rows of a tab-separated data file, each a list of fields.
function read_tsv(dir, name)
  local path = dir .. "/" .. name
  local file = io.open(path, "r")
  if file == nil then
    error("cannot open " .. path)
  end
  local rows = {}
  for line in file:lines() do
    if line ~= "" then
      local fields = {}
      for field in (line .. "\t"):gmatch("([^\t]*)\t") do
        fields[#fields + 1] = field
      end
      rows[#rows + 1] = fields
    end
  end
  file:close()
  if #rows == 0 then
    error(path .. " is empty")
  end
  return rows
end

-- Cycles through a list from a per-thread starting point, so the threads do
-- not send the same requests in step.
function cycle(list)
  local position = ((thread_index or 1) - 1) * 7919 % #list
  return function()
    position = position % #list + 1
    return list[position]
  end
end

function bearer(token)
  return "Bearer " .. token
end

function init(args)
  bad = 0
  local dir = args[1]
  if dir == nil then
    error("usage: wrk ... -s SCRIPT URL -- DATA_DIR")
  end
  math.randomseed(1000 + (thread_index or 1))
  next_request = cycle(prepare(dir))
end

function request()
  return next_request()
end

function response(status, headers, body)
  if status < 200 or status > 299 or (accept ~= nil and not accept(body)) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total_bad = 0
  for _, thread in ipairs(threads) do
    total_bad = total_bad + (thread:get("bad") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'IDP_BENCH_RESULT {"requests":%d,"duration_us":%d,"bad":%d,"connect":%d,"read":%d,'
      .. '"write":%d,"timeout":%d,"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,"max_us":%.1f}\n',
    summary.requests, summary.duration, total_bad, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
