-- Key rotation and the audit hash chain (contract sections 14 and 15), the
-- SQLite twin of the PostgreSQL migration of the same name.
--
-- audit_events gains each event's place in its owner's chain (`sequence`,
-- from 1 without gaps) and its chain `hash`. SQLite cannot compute the hash
-- (SHA-256 over RFC 8785 JSON), so the events stored before this migration
-- keep NULL in both columns here, and the program links them right after, in
-- the same transaction that applies this migration (the backfill of the
-- store's `migrate` module). From then on every insert must be chained (the
-- trigger audit_events_chained below).

-- Events no tenant owns (a token request naming a client that is no agent)
-- belong to the system chain. The append-only trigger is dropped around the
-- one UPDATE and recreated exactly as the init migration wrote it.
DROP TRIGGER audit_events_no_update;

UPDATE audit_events SET owner = '_system' WHERE owner IS NULL;

CREATE TRIGGER audit_events_no_update
    BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused');
END;

ALTER TABLE audit_events ADD COLUMN sequence INTEGER CHECK (sequence >= 1);
ALTER TABLE audit_events ADD COLUMN hash TEXT
    CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*');

-- One event per place in a chain; also chain pages (owner, sequence >= ?).
-- Rows not yet linked (NULL sequence) do not clash: NULLs are distinct.
CREATE UNIQUE INDEX audit_events_owner_sequence_key ON audit_events (owner, sequence);

-- The rows the backfill still has to link, in the order it links them; empty
-- once it ran, so checking for work at every start is one index probe.
CREATE INDEX audit_events_unchained_idx ON audit_events (owner, "timestamp", event_id)
    WHERE sequence IS NULL;

-- Every new event is chained: an owner (the chain's), a sequence and a hash.
CREATE TRIGGER audit_events_chained
    BEFORE INSERT ON audit_events
    WHEN NEW.owner IS NULL OR NEW.sequence IS NULL OR NEW.hash IS NULL
BEGIN
    SELECT RAISE(ABORT, 'audit_events rows are chained: owner, sequence and hash required');
END;

-- The planner's statistics for the new unique index, in the shape of those of
-- migration 2026-12-02-000000_audit_statistics (10,000 events per owner, one
-- per (owner, sequence)); a database already analyzed keeps its figures for
-- the other indexes.
INSERT INTO sqlite_stat1 (tbl, idx, stat)
SELECT 'audit_events', 'audit_events_owner_sequence_key', '100000 10000 1'
WHERE NOT EXISTS (SELECT 1 FROM sqlite_stat1 WHERE idx = 'audit_events_owner_sequence_key');

-- The head of every owner's chain, written by each append in its transaction:
-- verification compares the stored chain with it, so a cut tail or an event
-- added past it is caught.
CREATE TABLE audit_heads (
    owner    TEXT    NOT NULL PRIMARY KEY,
    sequence INTEGER NOT NULL CHECK (sequence >= 1),
    hash     TEXT    NOT NULL CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*')
) STRICT;

-- Signing keys over time: keyed by kid, several per algorithm. SQLite cannot
-- change a primary key in place: the table is rebuilt. An existing key (one
-- per algorithm) keeps its kid, algorithm and key; it activated when it was
-- made, its activation counts as recorded, and it succeeds the key made
-- before it (by created_at, then kid), so at most one key succeeds another.
CREATE TABLE signing_keys_rebuilt (
    kid                 TEXT    NOT NULL PRIMARY KEY,
    algorithm           TEXT    NOT NULL,
    -- The PEM, or the PEM sealed under the key-encryption key: opaque here.
    private_key         TEXT    NOT NULL,
    succeeds            TEXT,
    created_at          INTEGER NOT NULL,
    activates_at        INTEGER NOT NULL,
    revoked_at          INTEGER,
    activation_recorded INTEGER NOT NULL CHECK (activation_recorded IN (0, 1))
) STRICT;

INSERT INTO signing_keys_rebuilt
    (kid, algorithm, private_key, succeeds, created_at, activates_at, revoked_at, activation_recorded)
SELECT k.kid, k.algorithm, k.private_pem,
       (SELECT p.kid FROM signing_keys AS p
         WHERE p.created_at < k.created_at OR (p.created_at = k.created_at AND p.kid < k.kid)
         ORDER BY p.created_at DESC, p.kid DESC
         LIMIT 1),
       k.created_at, k.created_at, NULL, 1
FROM signing_keys AS k;

DROP TABLE signing_keys;
ALTER TABLE signing_keys_rebuilt RENAME TO signing_keys;

-- One live successor per key (and one live first key): of two nodes rotating
-- at once, one insert wins.
CREATE UNIQUE INDEX signing_keys_one_live_successor ON signing_keys (coalesce(succeeds, ''))
    WHERE revoked_at IS NULL;

-- The key-set version: grows with every change of signing_keys, so nodes
-- notice they must reload the keys.
CREATE TABLE key_set_version (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL CHECK (version >= 0)
) STRICT;

INSERT INTO key_set_version (id, version) VALUES (1, 0);

-- Which key-set version each node last installed, and when it said so.
CREATE TABLE key_set_nodes (
    node    TEXT    NOT NULL PRIMARY KEY,
    version INTEGER NOT NULL CHECK (version >= 0),
    seen_at INTEGER NOT NULL
) STRICT;
