-- Runs as role emporium_users with search_path = users.
CREATE TABLE users.users (
    id          uuid PRIMARY KEY,
    email       text NOT NULL CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);
