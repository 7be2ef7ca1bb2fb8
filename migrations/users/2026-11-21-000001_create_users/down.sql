DROP TABLE users.users;
