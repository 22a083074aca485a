-- The monthly quota counts an actor's successful token exchanges; rebuilding
-- a lost counter reads them by actor.
CREATE INDEX audit_events_exchanges_by_actor_idx ON audit_events (owner, actor_id, "timestamp")
    WHERE action = 'token.exchanged' AND outcome = 'success';
