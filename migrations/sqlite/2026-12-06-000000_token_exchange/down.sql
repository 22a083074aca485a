DROP INDEX IF EXISTS audit_events_exchanges_by_actor_idx;
