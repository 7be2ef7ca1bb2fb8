-- What the purger (`users::Auth::purge`) deletes by: expired refresh tokens, and failed
-- logins older than any lock window.
CREATE INDEX refresh_tokens_expires_idx ON users.refresh_tokens (expires_at);
CREATE INDEX login_failures_failed_idx ON users.login_failures (failed_at);
