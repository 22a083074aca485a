-- Back to the schema of 2026-12-05-000000_public_keys_resources_dpop: the
-- delegates are forgotten.
ALTER TABLE agents
    DROP COLUMN delegates;
