DROP TABLE IF EXISTS key_set_nodes;
DROP TABLE IF EXISTS key_set_version;

-- Back to one key per algorithm: the newest of each is kept.
DROP INDEX IF EXISTS signing_keys_one_live_successor;
DELETE FROM signing_keys AS k
WHERE EXISTS (
    SELECT 1 FROM signing_keys AS newer
    WHERE newer.algorithm = k.algorithm
      AND (newer.created_at, newer.kid) > (k.created_at, k.kid)
);
ALTER TABLE signing_keys
    DROP COLUMN activation_recorded,
    DROP COLUMN revoked_at,
    DROP COLUMN activates_at,
    DROP COLUMN succeeds;
ALTER TABLE signing_keys RENAME COLUMN private_key TO private_pem;
ALTER TABLE signing_keys DROP CONSTRAINT signing_keys_pkey;
ALTER TABLE signing_keys ADD CONSTRAINT signing_keys_pkey PRIMARY KEY (algorithm);

DROP TABLE IF EXISTS audit_heads;
DROP INDEX IF EXISTS audit_events_owner_sequence_key;
ALTER TABLE audit_events ALTER COLUMN owner DROP NOT NULL;
ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_or_delete;
UPDATE audit_events SET owner = NULL WHERE owner = '_system';
ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_or_delete;
ALTER TABLE audit_events
    DROP COLUMN hash,
    DROP COLUMN sequence;
