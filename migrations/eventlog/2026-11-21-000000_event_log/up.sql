-- The kernel's event-log tables, applied into every module schema that keeps an event log
-- (search_path is that schema; this file names no schema on purpose).

-- The module's outbox: written in the same transaction as the state change.
-- `xid` orders events by writing transaction; readers only read below the oldest
-- transaction still running, so an event that commits late is never skipped.
CREATE TABLE events (
    xid                xid8 NOT NULL DEFAULT pg_current_xact_id(),
    seq                bigint GENERATED ALWAYS AS IDENTITY,
    event_id           uuid NOT NULL UNIQUE,
    event_type         text NOT NULL,
    aggregate_id       uuid NOT NULL,
    aggregate_version  bigint NOT NULL,
    occurred_at        timestamptz NOT NULL,
    schema_version     integer NOT NULL,
    payload            jsonb NOT NULL,
    PRIMARY KEY (xid, seq)
);

-- Where each of this module's subscribers stands in each source's event log; moved in the
-- same transaction as the subscriber's own writes.
CREATE TABLE checkpoints (
    subscriber  text NOT NULL,
    source      text NOT NULL,
    xid         xid8 NOT NULL DEFAULT '0',
    seq         bigint NOT NULL DEFAULT 0,
    applied     bigint NOT NULL DEFAULT 0,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscriber, source)
);

-- Events a subscriber gave up on after repeated failures; they can be retried.
CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscriber  text NOT NULL,
    source      text NOT NULL,
    event       jsonb NOT NULL,
    error       text NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now()
);
