-- users: credentials
-- Runs as role emporium_users with search_path = users; touch only schema users.
-- Passwords (argon2id PHC strings; NULL for users registered before passwords: they
-- cannot log in), staff roles, refresh tokens (hashed), signing keys, failed logins.
ALTER TABLE users.users
    ADD COLUMN password_hash text,
    ADD COLUMN roles text[] NOT NULL DEFAULT '{}'
        CHECK (roles <@ ARRAY['catalog', 'fulfilment', 'support', 'admin']::text[]);

-- One row per refresh token ever issued; `family_id` is the login it descends from.
CREATE TABLE users.refresh_tokens (
    id          uuid PRIMARY KEY,
    family_id   uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users.users (id),
    token_hash  bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    CONSTRAINT refresh_tokens_hash_key UNIQUE (token_hash)
);
CREATE INDEX refresh_tokens_family_idx ON users.refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON users.refresh_tokens (user_id) WHERE revoked_at IS NULL;

-- Ed25519 signing keys (PKCS#8 DER); the newest signs, older ones still verify.
CREATE TABLE users.signing_keys (
    kid         text PRIMARY KEY,
    private_key bytea NOT NULL,
    public_key  bytea NOT NULL CHECK (length(public_key) = 32),
    created_at  timestamptz NOT NULL
);

-- Failed password logins, per email, for the brute-force lock.
CREATE TABLE users.login_failures (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email       text NOT NULL,
    failed_at   timestamptz NOT NULL
);
CREATE INDEX login_failures_email_idx ON users.login_failures (email, failed_at);
