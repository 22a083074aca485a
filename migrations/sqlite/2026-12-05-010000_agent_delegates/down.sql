-- Back to the schema of 2026-12-05-000000_public_keys_resources_dpop: the
-- delegates are forgotten. The triggers first: they name the column.
DROP TRIGGER IF EXISTS agents_delegates_are_strings_on_update;
DROP TRIGGER IF EXISTS agents_delegates_are_strings_on_insert;
ALTER TABLE agents DROP COLUMN delegates;
