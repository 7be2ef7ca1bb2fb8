DROP TABLE scratch.notes;
