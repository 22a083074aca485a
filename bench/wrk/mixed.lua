-- Scenario `mixed` of idp-bench (bench/README.md): 70% reads (30% agents-get,
-- 15% introspect, 15% audit-query, 10% agents-list), 20% token requests and 10%
-- writes (PATCH of an agent's version, each one audited).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")
dofile(here .. "requests.lua")

function prepare(dir)
  local get = cycle(agents_get_requests(dir))
  local introspect = cycle(introspect_requests(dir))
  local audit = cycle(audit_query_requests(dir))
  local list = cycle(agents_list_requests(dir))
  local token = cycle(token_requests(dir))
  local patch = cycle(patch_requests(dir))
  -- One slot per percent.
  local mix = {}
  local function add(n, next_of_kind)
    for _ = 1, n do
      mix[#mix + 1] = next_of_kind
    end
  end
  add(30, get)
  add(15, introspect)
  add(15, audit)
  add(10, list)
  add(20, token)
  add(10, patch)
  return mix
end

function request()
  return next_request()()
end

-- cycle() over the mix would repeat one fixed order; draw a kind at random.
function init(args)
  bad = 0
  local dir = args[1]
  if dir == nil then
    error("usage: wrk ... -s SCRIPT URL -- DATA_DIR")
  end
  math.randomseed(1000 + (thread_index or 1))
  local mix = prepare(dir)
  next_request = function()
    return mix[math.random(#mix)]
  end
end
