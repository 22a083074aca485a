-- The requests of each scenario, built from the driver's data files; shared
-- by the scenario scripts and mixed.lua.

function token_requests(dir)
  local list = {}
  for _, row in ipairs(read_tsv(dir, "token.tsv")) do
    list[#list + 1] = wrk.format("POST", "/api/v1/token", {
      ["Authorization"] = "Basic " .. row[1],
      ["Content-Type"] = "application/x-www-form-urlencoded",
    }, "grant_type=client_credentials")
  end
  return list
end

-- RFC 8693 token exchange: the actor authenticates with client_secret_basic
-- and trades a token of the agent that lists it in its `delegates`. Each row
-- is the actor's Basic credentials and the subject token (reusable: cycled).
function token_exchange_requests(dir)
  local list = {}
  for _, row in ipairs(read_tsv(dir, "token-exchange.tsv")) do
    list[#list + 1] = wrk.format("POST", "/api/v1/token", {
      ["Authorization"] = "Basic " .. row[1],
      ["Content-Type"] = "application/x-www-form-urlencoded",
    }, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
      .. "&subject_token=" .. row[2]
      .. "&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token")
  end
  return list
end

function introspect_requests(dir)
  local list = {}
  for _, row in ipairs(read_tsv(dir, "introspect.tsv")) do
    list[#list + 1] = wrk.format("POST", "/api/v1/token/introspect", {
      ["Authorization"] = bearer(row[1]),
      ["Content-Type"] = "application/x-www-form-urlencoded",
    }, "token=" .. row[2])
  end
  return list
end

function agents_get_requests(dir)
  local list = {}
  for _, row in ipairs(read_tsv(dir, "agents.tsv")) do
    list[#list + 1] = wrk.format("GET", "/api/v1/agents/" .. row[2], {
      ["Authorization"] = bearer(row[1]),
    })
  end
  return list
end

function agents_list_requests(dir)
  local list = {}
  for _, row in ipairs(read_tsv(dir, "owners.tsv")) do
    list[#list + 1] = wrk.format("GET", "/api/v1/agents?limit=20&status=active", {
      ["Authorization"] = bearer(row[1]),
    })
  end
  return list
end

function audit_query_requests(dir)
  local list = {}
  for _, row in ipairs(read_tsv(dir, "audit.tsv")) do
    local path = "/api/v1/audit?agentId=" .. row[2] .. "&fromDate=" .. row[3] .. "&toDate=" .. row[4]
    list[#list + 1] = wrk.format("GET", path, {
      ["Authorization"] = bearer(row[1]),
    })
  end
  return list
end

-- PATCH of an agent's version (not of the admins, whose tokens the reads use).
function patch_requests(dir)
  local list = {}
  for i, row in ipairs(read_tsv(dir, "agents.tsv")) do
    if row[3] ~= "1" then
      local body = string.format('{"version":"2.%d.%d"}', i % 100, (thread_index or 1))
      list[#list + 1] = wrk.format("PATCH", "/api/v1/agents/" .. row[2], {
        ["Authorization"] = bearer(row[1]),
        ["Content-Type"] = "application/json",
      }, body)
    end
  end
  return list
end

-- The rows of this thread's file of single-use requests, which the driver
-- signs right before each run: <scenario>-<thread>.tsv.
local function single_use_rows(dir, scenario)
  return read_tsv(dir, scenario .. "-" .. (thread_index or 1) .. ".tsv")
end

-- client_credentials with a private_key_jwt assertion: each row is the form body.
function token_pkjwt_requests(dir)
  local list = {}
  for _, row in ipairs(single_use_rows(dir, "token-pkjwt")) do
    list[#list + 1] = wrk.format("POST", "/api/v1/token", {
      ["Content-Type"] = "application/x-www-form-urlencoded",
    }, row[1])
  end
  return list
end

-- client_credentials with client_secret_basic and a DPoP proof: each row is
-- the Basic credentials and the proof.
function token_dpop_requests(dir)
  local list = {}
  for _, row in ipairs(single_use_rows(dir, "token-dpop")) do
    list[#list + 1] = wrk.format("POST", "/api/v1/token", {
      ["Authorization"] = "Basic " .. row[1],
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["DPoP"] = row[2],
    }, "grant_type=client_credentials")
  end
  return list
end
