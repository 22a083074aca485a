-- AgentIdP initial schema (SQLite, the embedded store). The same tables,
-- constraints and indexes as migrations/postgres, translated:
--
-- * Every table is STRICT, so SQLite refuses a value of the wrong type
--   instead of storing it anyway.
-- * Identifiers (UUIDs) are TEXT in the lowercase hyphenated form
--   (`0b7c...-...`, 36 characters). For that form, text order is the UUID's
--   byte order, so `ORDER BY agent_id DESC` sorts as PostgreSQL's uuid does.
-- * Instants are INTEGER milliseconds since the Unix epoch, UTC: the
--   contract's precision (the program's clock truncates to milliseconds),
--   compact, and ordered as numbers. Read one by hand with
--   `strftime('%Y-%m-%dT%H:%M:%fZ', created_at / 1000.0, 'unixepoch')`.
-- * Capabilities are a JSON array of strings (TEXT), metadata a JSON value (TEXT).
-- * Enumerations are TEXT with CHECK constraints, as in PostgreSQL.
--
-- Every index serves a list, filter or count of the store ports.

CREATE TABLE agents (
    agent_id         TEXT    NOT NULL PRIMARY KEY
                             CHECK (length(agent_id) = 36 AND agent_id NOT GLOB '*[^0-9a-f-]*'),
    email            TEXT    NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    -- Uniqueness is case-insensitive across all owners; the database derives the
    -- normalized form itself so no writer can get it wrong. Addresses are ASCII
    -- (the domain refuses anything else), and SQLite's lower() folds exactly ASCII.
    email_normalized TEXT    GENERATED ALWAYS AS (lower(email)) STORED,
    agent_type       TEXT    NOT NULL CHECK (agent_type IN
                         ('screener', 'classifier', 'orchestrator', 'extractor',
                          'summarizer', 'router', 'monitor', 'custom')),
    version          TEXT    NOT NULL,
    -- A non-empty JSON array; that every element is a string is checked by the
    -- triggers below (a CHECK may not look inside it with a subquery).
    capabilities     TEXT    NOT NULL CHECK (json_valid(capabilities)
                                             AND json_type(capabilities) = 'array'
                                             AND json_array_length(capabilities) >= 1),
    owner            TEXT    NOT NULL,
    deployment_env   TEXT    NOT NULL CHECK (deployment_env IN ('development', 'staging', 'production')),
    status           TEXT    NOT NULL CHECK (status IN ('active', 'suspended', 'decommissioned')),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    CONSTRAINT agents_email_normalized_key UNIQUE (email_normalized),
    -- Target of the credentials' (agent_id, owner) foreign key.
    CONSTRAINT agents_agent_id_owner_key UNIQUE (agent_id, owner)
) STRICT;

-- PostgreSQL's text[] cannot hold anything but text; this keeps the JSON array
-- as strict: every element a string (so never a null).
CREATE TRIGGER agents_capabilities_are_strings_on_insert
    BEFORE INSERT ON agents
    WHEN EXISTS (SELECT 1 FROM json_each(NEW.capabilities) WHERE type <> 'text')
BEGIN
    SELECT RAISE(ABORT, 'agents.capabilities must be a JSON array of strings');
END;

CREATE TRIGGER agents_capabilities_are_strings_on_update
    BEFORE UPDATE OF capabilities ON agents
    WHEN EXISTS (SELECT 1 FROM json_each(NEW.capabilities) WHERE type <> 'text')
BEGIN
    SELECT RAISE(ABORT, 'agents.capabilities must be a JSON array of strings');
END;

-- GET /agents: newest first within an owner, with optional filters; also the
-- per-owner count of non-decommissioned agents (the free-tier limit).
CREATE INDEX agents_owner_created_idx ON agents (owner, created_at DESC, agent_id DESC);
CREATE INDEX agents_owner_status_created_idx ON agents (owner, status, created_at DESC, agent_id DESC);
CREATE INDEX agents_owner_type_created_idx ON agents (owner, agent_type, created_at DESC, agent_id DESC);
CREATE INDEX agents_owner_env_created_idx ON agents (owner, deployment_env, created_at DESC, agent_id DESC);

CREATE TABLE credentials (
    credential_id TEXT    NOT NULL PRIMARY KEY
                          CHECK (length(credential_id) = 36 AND credential_id NOT GLOB '*[^0-9a-f-]*'),
    agent_id      TEXT    NOT NULL,
    -- Denormalized so every tenant query filters on it; the foreign key keeps it
    -- equal to the agent's owner (every connection runs PRAGMA foreign_keys=ON).
    owner         TEXT    NOT NULL,
    secret_hash   TEXT    NOT NULL,
    secret_hint   TEXT,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    revoked_at    INTEGER,
    CONSTRAINT credentials_agent_fkey FOREIGN KEY (agent_id, owner) REFERENCES agents (agent_id, owner)
) STRICT;

-- Listing an agent's credentials newest first, and counting its active ones.
CREATE INDEX credentials_agent_created_idx ON credentials (agent_id, created_at DESC, credential_id DESC);
-- Client authentication: the agent's credentials with a given lookup hint.
CREATE INDEX credentials_agent_hint_idx ON credentials (agent_id, secret_hint);

CREATE TABLE audit_events (
    event_id    TEXT    NOT NULL PRIMARY KEY
                        CHECK (length(event_id) = 36 AND event_id NOT GLOB '*[^0-9a-f-]*'),
    -- NULL when a token request named a client that is no agent: no tenant sees it.
    owner       TEXT,
    agent_id    TEXT,
    actor_id    TEXT,
    -- No CHECK on action: a new action must not need a migration.
    action      TEXT    NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('success', 'failure')),
    ip_address  TEXT,
    user_agent  TEXT,
    metadata    TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    "timestamp" INTEGER NOT NULL
) STRICT;

CREATE INDEX audit_events_owner_time_idx ON audit_events (owner, "timestamp" DESC, event_id DESC);
CREATE INDEX audit_events_owner_agent_time_idx ON audit_events (owner, agent_id, "timestamp" DESC, event_id DESC);
CREATE INDEX audit_events_owner_action_time_idx ON audit_events (owner, action, "timestamp" DESC, event_id DESC);

-- The audit log is append-only: the database itself refuses to rewrite history,
-- whatever path (program, the sqlite3 shell, a future bug) tries. SQLite has no
-- TRUNCATE: a DELETE without WHERE fires the DELETE trigger too (triggers turn
-- off its truncate optimization).
CREATE TRIGGER audit_events_no_update
    BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused');
END;

CREATE TRIGGER audit_events_no_delete
    BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused');
END;

-- `INSERT OR REPLACE` deletes the clashing row without firing DELETE triggers
-- (unless recursive_triggers is on), so it would overwrite an event: refuse any
-- insert of an existing event id before conflict resolution runs.
CREATE TRIGGER audit_events_no_replace
    BEFORE INSERT ON audit_events
    WHEN EXISTS (SELECT 1 FROM audit_events WHERE event_id = NEW.event_id)
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: REPLACE refused');
END;

CREATE TABLE revoked_tokens (
    jti        TEXT    NOT NULL PRIMARY KEY
                       CHECK (length(jti) = 36 AND jti NOT GLOB '*[^0-9a-f-]*'),
    owner      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL
) STRICT;

-- Reloading the revocation cache: every revocation whose token is still unexpired.
CREATE INDEX revoked_tokens_expires_idx ON revoked_tokens (expires_at);

-- One signing key per algorithm, shared by every process using this file.
CREATE TABLE signing_keys (
    algorithm   TEXT    NOT NULL PRIMARY KEY,
    kid         TEXT    NOT NULL,
    private_pem TEXT    NOT NULL,
    -- Milliseconds since the epoch, written so any SQLite version computes it.
    created_at  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
) STRICT;
