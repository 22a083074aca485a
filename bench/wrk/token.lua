-- Scenario `token` of idp-bench (bench/README.md).
-- client_credentials with client_secret_basic, rotating through every seeded credential.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")
dofile(here .. "requests.lua")

prepare = token_requests
