-- Back to the schema of 2026-12-04-000000_key_rotation_and_audit_chain. A
-- public-key credential has no secret to fall back to: it is deleted, since
-- it could no longer authenticate anything.
DROP TRIGGER IF EXISTS agents_resources_are_strings_on_update;
DROP TRIGGER IF EXISTS agents_resources_are_strings_on_insert;
ALTER TABLE agents DROP COLUMN require_dpop;
ALTER TABLE agents DROP COLUMN resources;

DELETE FROM credentials WHERE credential_type = 'public_key';
-- jwk_thumbprint first: its CHECK names the other two columns.
ALTER TABLE credentials DROP COLUMN jwk_thumbprint;
ALTER TABLE credentials DROP COLUMN public_jwk;
ALTER TABLE credentials DROP COLUMN credential_type;
