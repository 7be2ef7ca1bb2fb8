//! The read side's suite: the projection fed events directly, into fresh databases.

mod projection;
