-- Public-key credentials (`private_key_jwt`), and an agent's resources
-- (RFC 8707 audiences) and DPoP requirement (RFC 9449): the SQLite twin of
-- the PostgreSQL migration of the same name.
--
-- Columns are added, not rebuilt into new tables: ADD COLUMN keeps the rows,
-- indexes and foreign keys as they are. SQLite cannot add a table constraint
-- to an existing table, but a column's CHECK may name other columns (SQLite
-- treats both alike), so each rule that spans columns sits on the last
-- column it names, and dropping that column (down.sql) drops the rule too.

-- Credentials ---------------------------------------------------------------
--
-- A credential is a secret (its hash) or a public key (its JWK). secret_hash
-- stays NOT NULL, '' for a public key, since dropping NOT NULL would mean
-- rebuilding the table. A public key's secret_hint is NULL; the type, not
-- the hint, keeps it out of the secret lookup.
ALTER TABLE credentials ADD COLUMN credential_type TEXT NOT NULL DEFAULT 'secret'
    CHECK (credential_type IN ('secret', 'public_key'));

-- The public JWK's JSON text, exactly as the program wrote it.
ALTER TABLE credentials ADD COLUMN public_jwk TEXT
    CHECK (public_jwk IS NULL OR (json_valid(public_jwk) AND json_type(public_jwk) = 'object'));

-- Its RFC 7638 thumbprint. Each row holds exactly its own type's key
-- material, so a hand-edited row cannot be half secret, half public key.
ALTER TABLE credentials ADD COLUMN jwk_thumbprint TEXT
    CHECK ((credential_type = 'secret'
                AND public_jwk IS NULL AND jwk_thumbprint IS NULL)
           OR (credential_type = 'public_key'
                AND public_jwk IS NOT NULL AND jwk_thumbprint IS NOT NULL
                AND secret_hash = '' AND secret_hint IS NULL));

-- Agents --------------------------------------------------------------------
--
-- A JSON array of strings, as capabilities are (but possibly empty); the
-- triggers below check the elements. Existing agents name no resource and do
-- not require DPoP.
ALTER TABLE agents ADD COLUMN resources TEXT NOT NULL DEFAULT '[]'
    CHECK (json_valid(resources) AND json_type(resources) = 'array');

ALTER TABLE agents ADD COLUMN require_dpop INTEGER NOT NULL DEFAULT 0
    CHECK (require_dpop IN (0, 1));

CREATE TRIGGER agents_resources_are_strings_on_insert
    BEFORE INSERT ON agents
    WHEN EXISTS (SELECT 1 FROM json_each(NEW.resources) WHERE type <> 'text')
BEGIN
    SELECT RAISE(ABORT, 'agents.resources must be a JSON array of strings');
END;

CREATE TRIGGER agents_resources_are_strings_on_update
    BEFORE UPDATE OF resources ON agents
    WHEN EXISTS (SELECT 1 FROM json_each(NEW.resources) WHERE type <> 'text')
BEGIN
    SELECT RAISE(ABORT, 'agents.resources must be a JSON array of strings');
END;
