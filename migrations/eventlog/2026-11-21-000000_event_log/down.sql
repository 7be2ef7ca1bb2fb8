DROP TABLE dead_letters;
DROP TABLE checkpoints;
DROP TABLE events;
