-- Scenario `agents-list` of idp-bench (bench/README.md).
-- GET /api/v1/agents?limit=20&status=active, rotating through the owners.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")
dofile(here .. "requests.lua")

prepare = agents_list_requests
