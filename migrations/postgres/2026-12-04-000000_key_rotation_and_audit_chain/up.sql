-- Signing-key rotation (contract section 14) and the audit hash chain
-- (contract section 15).

-- Audit chain -------------------------------------------------------------
--
-- Every event gets its place in its owner's chain (`sequence`, from 1, no
-- gaps) and its chain hash. Hashes are SHA-256 over RFC 8785 canonical JSON,
-- which SQL cannot compute: events stored before this migration keep NULL
-- here until the program's migration step (`run_migrations`) links them, in
-- the same run, ordered by "timestamp" then event_id.
ALTER TABLE audit_events
    ADD COLUMN sequence bigint,
    ADD COLUMN hash     text;

-- Events no tenant owns join the operators' chain, `_system`. The UPDATE is
-- the only rewrite of history ever made, by the table's owner, here.
ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_or_delete;
UPDATE audit_events SET owner = '_system' WHERE owner IS NULL;
ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_or_delete;
ALTER TABLE audit_events ALTER COLUMN owner SET NOT NULL;

-- One event per place in a chain (forks are refused), and the index that
-- reads a chain in order.
CREATE UNIQUE INDEX audit_events_owner_sequence_key ON audit_events (owner, sequence);

-- The head recorded at each append: its row lock serializes the appends of
-- one owner, and a verifier compares the stored chain's end with it (a cut
-- tail or a forged extra event shows).
CREATE TABLE audit_heads (
    owner    text   PRIMARY KEY,
    sequence bigint NOT NULL CHECK (sequence >= 0),
    hash     text   NOT NULL
);

-- Signing keys --------------------------------------------------------------
--
-- From one key per algorithm to a timeline of keys, each replacing the one it
-- `succeeds`; a key's state follows from its stored times.
ALTER TABLE signing_keys DROP CONSTRAINT signing_keys_pkey;
ALTER TABLE signing_keys ADD CONSTRAINT signing_keys_pkey PRIMARY KEY (kid);
ALTER TABLE signing_keys RENAME COLUMN private_pem TO private_key;
ALTER TABLE signing_keys
    ADD COLUMN succeeds            text,
    ADD COLUMN activates_at        timestamptz,
    ADD COLUMN revoked_at          timestamptz,
    ADD COLUMN activation_recorded boolean NOT NULL DEFAULT true;

-- Existing keys were active from their creation; they form one line, each
-- succeeding the one made before it.
UPDATE signing_keys AS k
SET activates_at = k.created_at,
    succeeds = previous.kid
FROM (
    SELECT kid, lag(kid) OVER (ORDER BY created_at, kid) AS kid_before
    FROM signing_keys
) AS ordered
LEFT JOIN signing_keys AS previous ON previous.kid = ordered.kid_before
WHERE ordered.kid = k.kid;

ALTER TABLE signing_keys ALTER COLUMN activates_at SET NOT NULL;
ALTER TABLE signing_keys ALTER COLUMN activation_recorded DROP DEFAULT;

-- At most one key that is not revoked replaces a given key (NULL: the first
-- key): of two nodes rotating at once, one INSERT wins, the other does
-- nothing (`ON CONFLICT DO NOTHING` on this index).
CREATE UNIQUE INDEX signing_keys_one_live_successor
    ON signing_keys ((coalesce(succeeds, '')))
    WHERE revoked_at IS NULL;

-- Grows with every change of the keys; nodes reload their key ring when it
-- moves.
CREATE TABLE key_set_version (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint  NOT NULL
);
INSERT INTO key_set_version (id, version) VALUES (true, 0);

-- Which key-set version each node last installed, and when it said so.
CREATE TABLE key_set_nodes (
    node    text        PRIMARY KEY,
    version bigint      NOT NULL,
    seen_at timestamptz NOT NULL
);
