//! The products module: the catalog, stock, and reservations of stock for orders.
//!
//! Implements [`products_api::ProductApi`] over its own schema `products` (role
//! `emporium_products`) and serves `/products`. Knows nothing of users, orders or payments:
//! a reservation is keyed by an opaque `OrderId` the caller supplies.

mod domain;
mod http;
mod rules;
mod schema;
mod service;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};

pub use http::{endpoints, routes};
pub use service::ProductService;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/products");

/// The schema this module owns, and the migrations that build it.
pub const SCHEMA: kernel::db::Schema = kernel::db::Schema {
    name: "products",
    migrations: &[&eventlog::MIGRATIONS, &MIGRATIONS],
};
