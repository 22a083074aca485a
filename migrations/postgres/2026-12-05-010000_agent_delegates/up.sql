-- An agent's delegates (RFC 8693 delegation): the agents of the same owner
-- that may act on its behalf, in the order given.
--
-- uuid[] as capabilities and resources are text[]: the same rules (no NULL
-- element), and diesel reads it as a Vec without a JSON step. That each id
-- names an agent of the same owner is the service's to check: no foreign
-- key, so decommissioning or deleting a delegate leaves the lists as they
-- are. Existing agents name no delegate.
ALTER TABLE agents
    ADD COLUMN delegates uuid[] NOT NULL DEFAULT '{}'
        CONSTRAINT agents_delegates_check
        CHECK (array_position(delegates, NULL) IS NULL);
