ALTER TABLE users.users DROP COLUMN version;
