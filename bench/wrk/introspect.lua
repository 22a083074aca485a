-- Scenario `introspect` of idp-bench (bench/README.md).
-- Introspection of valid tokens by their owner's admin; an inactive answer counts as bad.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")
dofile(here .. "requests.lua")

prepare = introspect_requests

function accept(body)
  return body:find('"active":true', 1, true) ~= nil
end
