-- Scenario `audit-query` of idp-bench (bench/README.md).
-- GET /api/v1/audit with agentId, fromDate (7 days ago) and toDate, over every agent.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")
dofile(here .. "requests.lua")

prepare = audit_query_requests
