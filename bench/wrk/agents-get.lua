-- Scenario `agents-get` of idp-bench (bench/README.md).
-- GET /api/v1/agents/{id} over every seeded agent, with its owner's admin token.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")
dofile(here .. "requests.lua")

prepare = agents_get_requests
