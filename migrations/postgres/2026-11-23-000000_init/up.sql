-- AgentIdP initial schema (PostgreSQL).
--
-- Times are timestamptz (the program writes UTC instants truncated to
-- milliseconds). Enumerations are text with CHECK constraints so a bad write is
-- refused here and a hand-edited row cannot smuggle in a value the program
-- does not know. Every index serves a list, filter or lock of the store ports.

CREATE TABLE agents (
    agent_id         uuid        PRIMARY KEY,
    email            text        NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    -- Uniqueness is case-insensitive across all owners; the database derives the
    -- normalized form itself so no writer can get it wrong. Addresses are ASCII
    -- (the domain refuses anything else), so lower() equals the domain's rule.
    email_normalized text        GENERATED ALWAYS AS (lower(email)) STORED,
    agent_type       text        NOT NULL CHECK (agent_type IN
                         ('screener', 'classifier', 'orchestrator', 'extractor',
                          'summarizer', 'router', 'monitor', 'custom')),
    version          text        NOT NULL,
    capabilities     text[]      NOT NULL CHECK (cardinality(capabilities) >= 1
                                                 AND array_position(capabilities, NULL) IS NULL),
    owner            text        NOT NULL,
    deployment_env   text        NOT NULL CHECK (deployment_env IN ('development', 'staging', 'production')),
    status           text        NOT NULL CHECK (status IN ('active', 'suspended', 'decommissioned')),
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CONSTRAINT agents_email_normalized_key UNIQUE (email_normalized),
    -- Target of the credentials' (agent_id, owner) foreign key.
    CONSTRAINT agents_agent_id_owner_key UNIQUE (agent_id, owner)
);

-- GET /agents: newest first within an owner, with optional filters; also the
-- per-owner count of non-decommissioned agents (the free-tier limit).
CREATE INDEX agents_owner_created_idx ON agents (owner, created_at DESC, agent_id DESC);
CREATE INDEX agents_owner_status_created_idx ON agents (owner, status, created_at DESC, agent_id DESC);
CREATE INDEX agents_owner_type_created_idx ON agents (owner, agent_type, created_at DESC, agent_id DESC);
CREATE INDEX agents_owner_env_created_idx ON agents (owner, deployment_env, created_at DESC, agent_id DESC);

CREATE TABLE credentials (
    credential_id uuid        PRIMARY KEY,
    agent_id      uuid        NOT NULL,
    -- Denormalized so every tenant query filters on it; the foreign key keeps it
    -- equal to the agent's owner.
    owner         text        NOT NULL,
    secret_hash   text        NOT NULL,
    secret_hint   text,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz,
    revoked_at    timestamptz,
    CONSTRAINT credentials_agent_fkey FOREIGN KEY (agent_id, owner) REFERENCES agents (agent_id, owner)
);

-- Listing an agent's credentials newest first, and counting its active ones.
CREATE INDEX credentials_agent_created_idx ON credentials (agent_id, created_at DESC, credential_id DESC);
-- Client authentication: the agent's credentials with a given lookup hint.
CREATE INDEX credentials_agent_hint_idx ON credentials (agent_id, secret_hint);

CREATE TABLE audit_events (
    event_id    uuid        PRIMARY KEY,
    -- NULL when a token request named a client that is no agent: no tenant sees it.
    owner       text,
    agent_id    uuid,
    actor_id    uuid,
    -- No CHECK on action: a new action must not need a migration.
    action      text        NOT NULL,
    outcome     text        NOT NULL CHECK (outcome IN ('success', 'failure')),
    ip_address  text,
    user_agent  text,
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    "timestamp" timestamptz NOT NULL
);

CREATE INDEX audit_events_owner_time_idx ON audit_events (owner, "timestamp" DESC, event_id DESC);
CREATE INDEX audit_events_owner_agent_time_idx ON audit_events (owner, agent_id, "timestamp" DESC, event_id DESC);
CREATE INDEX audit_events_owner_action_time_idx ON audit_events (owner, action, "timestamp" DESC, event_id DESC);

-- The audit log is append-only: the database itself refuses to rewrite history,
-- whatever path (program, psql, a future bug) tries.
CREATE FUNCTION audit_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();

CREATE TABLE revoked_tokens (
    jti        uuid        PRIMARY KEY,
    owner      text        NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL
);

-- Reloading the revocation cache: every revocation whose token is still unexpired.
CREATE INDEX revoked_tokens_expires_idx ON revoked_tokens (expires_at);

-- One signing key per algorithm, shared by every node.
CREATE TABLE signing_keys (
    algorithm   text        PRIMARY KEY,
    kid         text        NOT NULL,
    private_pem text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
