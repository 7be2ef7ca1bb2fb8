-- Who caused each event and the request that did (the audit trail; see the contract's
-- envelope `actor` and `correlation_id`). Events written before read as the system's.
ALTER TABLE events
    ADD COLUMN actor_kind text NOT NULL DEFAULT 'system'
        CHECK (actor_kind IN ('user', 'admin_token', 'system')),
    ADD COLUMN actor_id uuid,
    ADD COLUMN correlation_id text CHECK (length(correlation_id) <= 128);
