DROP TABLE users.login_failures;
DROP TABLE users.signing_keys;
DROP TABLE users.refresh_tokens;
ALTER TABLE users.users DROP COLUMN roles, DROP COLUMN password_hash;
