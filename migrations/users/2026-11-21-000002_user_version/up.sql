-- Aggregate version, carried by every users event.
ALTER TABLE users.users ADD COLUMN version bigint NOT NULL DEFAULT 1;
