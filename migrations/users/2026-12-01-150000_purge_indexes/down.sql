DROP INDEX users.login_failures_failed_idx;
DROP INDEX users.refresh_tokens_expires_idx;
