DROP TABLE IF EXISTS signing_keys;
DROP TABLE IF EXISTS revoked_tokens;
DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events;
DROP TRIGGER IF EXISTS audit_events_no_update_or_delete ON audit_events;
DROP TABLE IF EXISTS audit_events;
DROP FUNCTION IF EXISTS audit_events_refuse_change();
DROP TABLE IF EXISTS credentials;
DROP TABLE IF EXISTS agents;
