//! users-api's integration tests: the boundary rules an `-api` crate keeps, and its event
//! contracts against their golden files.

mod golden;
mod tidy;
