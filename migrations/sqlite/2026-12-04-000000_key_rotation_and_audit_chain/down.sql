-- Back to the schema of 2026-12-02-000000_audit_statistics. Of several keys of
-- one algorithm, the one that was signing (the latest activated live key, else
-- the latest made) becomes that algorithm's key.
DROP TABLE IF EXISTS key_set_nodes;
DROP TABLE IF EXISTS key_set_version;

DROP INDEX IF EXISTS signing_keys_one_live_successor;

CREATE TABLE signing_keys_rebuilt (
    algorithm   TEXT    NOT NULL PRIMARY KEY,
    kid         TEXT    NOT NULL,
    private_pem TEXT    NOT NULL,
    created_at  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
) STRICT;

INSERT INTO signing_keys_rebuilt (algorithm, kid, private_pem, created_at)
SELECT k.algorithm, k.kid, k.private_key, k.created_at
FROM signing_keys AS k
WHERE k.kid = (SELECT p.kid FROM signing_keys AS p
                WHERE p.algorithm = k.algorithm
                ORDER BY p.revoked_at IS NULL DESC, p.activates_at DESC, p.created_at DESC, p.kid DESC
                LIMIT 1);

DROP TABLE signing_keys;
ALTER TABLE signing_keys_rebuilt RENAME TO signing_keys;

DROP TABLE IF EXISTS audit_heads;

DELETE FROM sqlite_stat1 WHERE idx = 'audit_events_owner_sequence_key';

DROP TRIGGER IF EXISTS audit_events_chained;
DROP INDEX IF EXISTS audit_events_unchained_idx;
DROP INDEX IF EXISTS audit_events_owner_sequence_key;
ALTER TABLE audit_events DROP COLUMN hash;
ALTER TABLE audit_events DROP COLUMN sequence;

DROP TRIGGER audit_events_no_update;

UPDATE audit_events SET owner = NULL WHERE owner = '_system';

CREATE TRIGGER audit_events_no_update
    BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused');
END;
