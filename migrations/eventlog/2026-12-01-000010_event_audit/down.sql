ALTER TABLE events
    DROP COLUMN correlation_id,
    DROP COLUMN actor_id,
    DROP COLUMN actor_kind;
