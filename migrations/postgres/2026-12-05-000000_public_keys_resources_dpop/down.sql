-- Back to the schema of 2026-12-04-000000_key_rotation_and_audit_chain. A
-- public-key credential has no secret to fall back to: it is deleted, since
-- it could no longer authenticate anything.
ALTER TABLE agents
    DROP COLUMN require_dpop,
    DROP COLUMN resources;

DELETE FROM credentials WHERE credential_type = 'public_key';
ALTER TABLE credentials
    DROP CONSTRAINT credentials_key_by_type_check,
    DROP COLUMN jwk_thumbprint,
    DROP COLUMN public_jwk,
    DROP COLUMN credential_type;
