CREATE TABLE scratch.notes (id bigint PRIMARY KEY);
