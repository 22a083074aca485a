-- The same function as 2026-12-07-000000 and the same effect, in two
-- statements instead of four: the heads are locked (sorted, "C" byte order,
-- as before) by the subquery whose rows are compared with the known heads,
-- and the heads move in a data-modifying WITH of the INSERT. Each statement a
-- PL/pgSQL function runs costs an executor start and end (pgbench, four
-- clients, three events per call: 1,642-1,669 calls/s against 1,476-1,541).
-- FOR UPDATE in a subquery that is not flattened locks each row it returns,
-- in the subquery's order, and returns the row as it is once locked (READ
-- COMMITTED), so the comparison sees the committed head.
CREATE OR REPLACE FUNCTION audit_append_from_known_heads(
    head_owner           text[],
    head_sequence        bigint[],
    head_hash            text[],
    new_head_sequence    bigint[],
    new_head_hash        text[],
    event_id             uuid[],
    event_owner          text[],
    event_agent_id       uuid[],
    event_actor_id       uuid[],
    event_action         text[],
    event_outcome        text[],
    event_ip_address     text[],
    event_user_agent     text[],
    event_metadata       jsonb[],
    event_timestamp      timestamptz[],
    event_sequence       bigint[],
    event_hash           text[]
) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    unchanged integer;
BEGIN
    SELECT count(*) INTO unchanged
    FROM (SELECT h.owner, h.sequence, h.hash
          FROM audit_heads AS h
          WHERE h.owner = ANY (head_owner)
          ORDER BY h.owner COLLATE "C"
          FOR UPDATE) AS locked
    JOIN unnest(head_owner, head_sequence, head_hash) AS known(owner, sequence, hash)
        ON locked.owner = known.owner AND locked.sequence = known.sequence
           AND locked.hash = known.hash;
    IF unchanged <> cardinality(head_owner) THEN
        RAISE EXCEPTION 'audit chain head moved'
            USING ERRCODE = 'P0001', HINT = 'append from the heads as stored';
    END IF;

    WITH moved AS (
        UPDATE audit_heads AS h
        SET sequence = m.sequence, hash = m.hash
        FROM unnest(head_owner, new_head_sequence, new_head_hash) AS m(owner, sequence, hash)
        WHERE h.owner = m.owner
    )
    INSERT INTO audit_events (event_id, owner, agent_id, actor_id, action, outcome,
                              ip_address, user_agent, metadata, "timestamp", sequence, hash)
    SELECT * FROM unnest(event_id, event_owner, event_agent_id, event_actor_id, event_action,
                         event_outcome, event_ip_address, event_user_agent, event_metadata,
                         event_timestamp, event_sequence, event_hash);
END;
$$;
