-- Scenario `token-dpop` of idp-bench (bench/README.md).
-- `token`'s client_secret_basic plus a DPoP proof (ES256). Each proof is
-- single-use: every thread walks its own file once. A reply that is not a
-- DPoP-bound token counts as bad.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")
dofile(here .. "requests.lua")

single_use = true
prepare = token_dpop_requests

function accept(body)
  return body:find('"token_type":"DPoP"', 1, true) ~= nil
end
