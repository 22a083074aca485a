-- Back to the four-statement body of 2026-12-07-000000.
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
    PERFORM 1 FROM audit_heads AS h
    WHERE h.owner = ANY (head_owner)
    ORDER BY h.owner COLLATE "C"
    FOR UPDATE;

    SELECT count(*) INTO unchanged
    FROM audit_heads AS h
    JOIN unnest(head_owner, head_sequence, head_hash) AS known(owner, sequence, hash)
        ON h.owner = known.owner AND h.sequence = known.sequence AND h.hash = known.hash;
    IF unchanged <> cardinality(head_owner) THEN
        RAISE EXCEPTION 'audit chain head moved'
            USING ERRCODE = 'P0001', HINT = 'append from the heads as stored';
    END IF;

    INSERT INTO audit_events (event_id, owner, agent_id, actor_id, action, outcome,
                              ip_address, user_agent, metadata, "timestamp", sequence, hash)
    SELECT * FROM unnest(event_id, event_owner, event_agent_id, event_actor_id, event_action,
                         event_outcome, event_ip_address, event_user_agent, event_metadata,
                         event_timestamp, event_sequence, event_hash);

    UPDATE audit_heads AS h
    SET sequence = moved.sequence, hash = moved.hash
    FROM unnest(head_owner, new_head_sequence, new_head_hash) AS moved(owner, sequence, hash)
    WHERE h.owner = moved.owner;
END;
$$;
