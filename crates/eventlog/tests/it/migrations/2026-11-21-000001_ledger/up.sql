-- A test subscriber's record of what it applied: no unique constraint, so applying an
-- event twice would show as two rows.
CREATE TABLE ledger.applied (
    source    text NOT NULL,
    event_id  uuid NOT NULL,
    position  bigint NOT NULL
);
