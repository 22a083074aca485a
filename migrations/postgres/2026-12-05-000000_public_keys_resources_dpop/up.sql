-- Public-key credentials (`private_key_jwt`), and an agent's resources
-- (RFC 8707 audiences) and DPoP requirement (RFC 9449).

-- Credentials ---------------------------------------------------------------
--
-- A credential is a secret (its hash) or a public key (its JWK). secret_hash
-- stays NOT NULL, '' for a public key, so both stores keep one shape (SQLite
-- cannot drop NOT NULL without rebuilding the table). A public key's
-- secret_hint is NULL; the type, not the hint, keeps it out of the secret
-- lookup.
ALTER TABLE credentials
    ADD COLUMN credential_type text NOT NULL DEFAULT 'secret'
        CONSTRAINT credentials_credential_type_check
        CHECK (credential_type IN ('secret', 'public_key')),
    -- The public JWK's JSON text, exactly as the program wrote it.
    ADD COLUMN public_jwk      text,
    -- Its RFC 7638 thumbprint, stored so a key can be found without parsing.
    ADD COLUMN jwk_thumbprint  text,
    -- Each row holds exactly its own type's key material, so a hand-edited
    -- row cannot be half secret, half public key.
    ADD CONSTRAINT credentials_key_by_type_check CHECK (
        (credential_type = 'secret'
            AND public_jwk IS NULL AND jwk_thumbprint IS NULL)
        OR (credential_type = 'public_key'
            AND public_jwk IS NOT NULL AND jwk_thumbprint IS NOT NULL
            AND secret_hash = '' AND secret_hint IS NULL)
    );

-- Agents --------------------------------------------------------------------
--
-- text[] as capabilities are: the same rules (no NULL element), and diesel
-- reads it as a Vec without a JSON step. Existing agents name no resource and
-- do not require DPoP.
ALTER TABLE agents
    ADD COLUMN resources    text[]  NOT NULL DEFAULT '{}'
        CONSTRAINT agents_resources_check
        CHECK (array_position(resources, NULL) IS NULL),
    ADD COLUMN require_dpop boolean NOT NULL DEFAULT false;
