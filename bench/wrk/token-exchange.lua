-- Scenario `token-exchange` of idp-bench (bench/README.md).
-- RFC 8693 token exchange: each seeded actor (client_secret_basic) trades a
-- token of the agent whose `delegates` name it, rotating through the pairs.
-- A reply that is not an exchanged access token counts as bad.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")
dofile(here .. "requests.lua")

prepare = token_exchange_requests

function accept(body)
  return body:find('"issued_token_type":"urn:ietf:params:oauth:token-type:access_token"', 1, true) ~= nil
end
