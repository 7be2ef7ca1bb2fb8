//! products-api's integration tests: the boundary rules an `-api` crate keeps.

mod tidy;
