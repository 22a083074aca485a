-- Scenario `token-pkjwt` of idp-bench (bench/README.md).
-- client_credentials with a private_key_jwt client assertion (ES256). Each
-- assertion is single-use: every thread walks its own file once.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")
dofile(here .. "requests.lua")

single_use = true
prepare = token_pkjwt_requests
