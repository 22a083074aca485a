-- An agent's delegates (RFC 8693 delegation): the agents of the same owner
-- that may act on its behalf, in the order given. The SQLite twin of the
-- PostgreSQL migration of the same name.
--
-- A JSON array of strings (agent ids as UUID text), as resources are,
-- possibly empty; the triggers below check the elements. That each id names
-- an agent of the same owner is the service's to check: no foreign key.
-- Existing agents name no delegate.
ALTER TABLE agents ADD COLUMN delegates TEXT NOT NULL DEFAULT '[]'
    CHECK (json_valid(delegates) AND json_type(delegates) = 'array');

CREATE TRIGGER agents_delegates_are_strings_on_insert
    BEFORE INSERT ON agents
    WHEN EXISTS (SELECT 1 FROM json_each(NEW.delegates) WHERE type <> 'text')
BEGIN
    SELECT RAISE(ABORT, 'agents.delegates must be a JSON array of strings');
END;

CREATE TRIGGER agents_delegates_are_strings_on_update
    BEFORE UPDATE OF delegates ON agents
    WHEN EXISTS (SELECT 1 FROM json_each(NEW.delegates) WHERE type <> 'text')
BEGIN
    SELECT RAISE(ABORT, 'agents.delegates must be a JSON array of strings');
END;
