DROP FUNCTION audit_append_from_known_heads(
    text[], bigint[], text[], bigint[], text[], uuid[], text[], uuid[], uuid[], text[], text[],
    text[], text[], jsonb[], timestamptz[], bigint[], text[]);
