//! The users module: registration, profile changes, activation, credentials and tokens.
//!
//! Implements [`users_api::UserApi`] over its own schema `users` (role `emporium_users`),
//! issues and verifies access tokens ([`Tokens`], the app's
//! [`kernel::auth::TokenVerifier`]), and serves `/users`, `/auth` and
//! `/.well-known/jwks.json`; who may do what on `/users` is [`rules`](crate::rules).
//! Knows nothing of products, orders or payments; other modules see it only through
//! `users-api`, and see callers only as a [`kernel::Principal`].

mod auth;
mod domain;
mod http;
mod rules;
mod schema;
mod service;
#[cfg(feature = "testing")]
pub mod testing;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};

pub use auth::keys::rotate as rotate_key;
pub use auth::tokens::{AUDIENCE, ISSUER};
pub use auth::{
    Auth, Jwk, Jwks, LoginLock, MAX_FAILURES, Purged, TokenPair, TokenSettings, Tokens,
};
pub use http::{endpoints, routes};
pub use service::UserService;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/users");

/// The schema this module owns, and the migrations that build it.
pub const SCHEMA: kernel::db::Schema = kernel::db::Schema {
    name: "users",
    migrations: &[&eventlog::MIGRATIONS, &MIGRATIONS],
};
