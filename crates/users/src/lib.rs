//! The users module: registration, profile changes, activation.
//!
//! Implements [`users_api::UserApi`] over its own schema `users` (role `emporium_users`) and
//! serves `/users`. Knows nothing of products, orders or payments; other modules see it
//! only through `users-api`.

mod domain;
mod http;
mod schema;
mod service;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};

pub use http::{endpoints, routes};
pub use service::UserService;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/users");

/// The schema this module owns, and the migrations that build it.
pub const SCHEMA: kernel::db::Schema = kernel::db::Schema {
    name: "users",
    migrations: &[&eventlog::MIGRATIONS, &MIGRATIONS],
};
