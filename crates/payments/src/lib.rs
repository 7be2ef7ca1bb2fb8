//! The payments module: charges an order's total through the payment gateway, refunds it,
//! and shows payments.
//!
//! Implements [`payments_api::PaymentApi`] over its own schema `payments` (role
//! `emporium_payments`) and a [`PaymentGateway`] ([`SimulatedGateway`] by default, whose
//! ledger is schema `gateway` ([`GATEWAY_SCHEMA`], role `emporium_gateway`): an external
//! system's stand-in, which the service reaches only through the trait), and
//! serves the read-only `/payments` routes. Publishes `payment.captured`,
//! `payment.declined`, `payment.failed` and `payment.refunded` to its event log.
//!
//! Knows nothing of the orders module's internals (an order is an opaque `OrderId` and an
//! amount its caller supplies; whether the amount is right is the caller's business), nor
//! of users or products.

mod domain;
mod gateway;
mod http;
mod rules;
mod schema;
mod service;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};

pub use gateway::{
    ChargeState, GATEWAY_SCHEMA, GatewayError, GatewayReceipt, LedgerOutcome, PaymentGateway,
    SimulatedGateway, SimulatedSettings,
};
pub use http::{endpoints, routes};
pub use service::{FaultHook, PaymentService, PaymentSettings, ReconcilerSettings};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/payments");

/// The schema this module owns, and the migrations that build it.
pub const SCHEMA: kernel::db::Schema = kernel::db::Schema {
    name: "payments",
    migrations: &[&eventlog::MIGRATIONS, &MIGRATIONS],
};
