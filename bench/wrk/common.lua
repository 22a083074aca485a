-- Shared by the scenario scripts of idp-bench (bench/README.md); loaded with
-- dofile by each of them. A scenario script defines prepare(dir), which answers
-- the list of ready-made requests (wrk.format strings) it cycles through, and
-- may define accept(body), a check of a 2xx body. The driver passes the
-- directory of its data files after `--`. A script whose requests the server
-- accepts only once sets `single_use = true`: each thread then walks its list
-- once instead of cycling (walk_once).
--
-- Every response that is not 2xx, or that accept() refuses, counts as bad; at
-- the end one line `IDP_BENCH_RESULT {json}` reports the run to the driver
-- (the driver fails a run with more than 1% bad).

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

-- Walks a list once, for requests the server accepts only once (a replay
-- would be refused). Past the end the thread counts the miss, stops, and
-- sends a harmless request meanwhile; the driver fails the run, whose rate
-- would otherwise count a stopped thread.
function walk_once(list)
  local position = 0
  return function()
    position = position + 1
    local item = list[position]
    if item == nil then
      exhausted = exhausted + 1
      wrk.thread:stop()
      return wrk.format("GET", "/healthz")
    end
    list[position] = nil
    return item
  end
end

-- A Lua string as a JSON string.
local function json_string(text)
  return '"' .. text:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
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
  exhausted = 0
  if single_use then
    next_request = walk_once(prepare(dir))
  else
    next_request = cycle(prepare(dir))
  end
end

function request()
  return next_request()
end

function response(status, headers, body)
  if status < 200 or status > 299 or (accept ~= nil and not accept(body)) then
    bad = bad + 1
    if first_bad == nil then
      first_bad = status .. " " .. (body or ""):sub(1, 200)
    end
  end
end

function done(summary, latency, requests)
  local total_bad, total_exhausted, first = 0, 0, "null"
  for _, thread in ipairs(threads) do
    total_bad = total_bad + (thread:get("bad") or 0)
    total_exhausted = total_exhausted + (thread:get("exhausted") or 0)
    local sample = thread:get("first_bad")
    if first == "null" and sample ~= nil then
      first = json_string(sample)
    end
  end
  local e = summary.errors
  io.write(string.format(
    'IDP_BENCH_RESULT {"requests":%d,"duration_us":%d,"bad":%d,"connect":%d,"read":%d,'
      .. '"write":%d,"timeout":%d,"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,"max_us":%.1f,'
      .. '"exhausted":%d,"first_bad":%s}\n',
    summary.requests, summary.duration, total_bad, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    total_exhausted, first))
end
