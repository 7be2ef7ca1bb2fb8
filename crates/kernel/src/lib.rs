//! The shared kernel: what every emporium module truly shares, and nothing more.
//!
//! Always available (and all an `-api` crate may use): typed ids, [`Money`], pagination,
//! the [`Problem`] error shape with [`IntoProblem`] (each `-api` error states its own
//! answer), the event [`Envelope`] and the event contracts ([`contract`]), the caller
//! ([`Principal`], [`Role`], with the guards each module's rules use), and duration
//! parsing, each with its OpenAPI schema.
//! Behind features:
//! - `golden`: [`contract::check_golden`], the golden test of a module's event contracts;
//! - `db`: Postgres plumbing (database creation, per-module roles and schemas, per-module
//!   migration history, pools whose connections act as the module's role, transactions);
//! - `http`: the actix-web mapping of [`Problem`], the JSON/path/query extractor
//!   configuration every module's routes use, request ids, trace context and panics as
//!   `500`, the methods of a path (`HEAD`, `OPTIONS`, `405` with `Allow`), compression,
//!   CORS, and conditional reads (`ETag`, `304`, `Cache-Control`); `openapi`
//!   registers each route from its `#[utoipa::path]` annotation; `auth` extracts the
//!   [`Principal`] from a bearer token through a [`auth::TokenVerifier`] a module supplies;
//! - `logs`: [`logs::FlatJson`], the JSON log line (flat: every span field at the top
//!   level, each key once);
//! - `db` or `http`: `context`, who and which request the running work is for (the actor
//!   and correlation id every appended event carries);
//! - `testing`: fresh databases cloned from a migrated template, and a server on port 0.
//!
//! What it must never know: any module (no user, product, order or payment rule, table
//! or event type lives here; no token format or key: a module verifies tokens behind
//! `auth::TokenVerifier`), the event log (that is `crates/eventlog`, built on this),
//! and the app's configuration (which modules exist, which schemas there are).

mod config;
pub mod contract;
mod event;
mod id;
pub mod input;
mod money;
mod page;
mod principal;
mod problem;
mod unit;

#[cfg(feature = "http")]
pub mod auth;
#[cfg(any(feature = "db", feature = "http"))]
pub mod context;
#[cfg(feature = "db")]
pub mod db;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "logs")]
pub mod logs;
#[cfg(feature = "http")]
pub mod openapi;
#[cfg(any(feature = "db", feature = "http"))]
mod panic;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "http")]
pub mod timing;

pub use config::{DEFAULT_DATABASE_URL, parse_duration, parse_interval, parse_origin};
pub use contract::{Contract, Log, Payload, Subscribes};
pub use event::{Actor, ActorKind, Envelope, NewEvent};
pub use id::{OrderId, PaymentId, ProductId, UserId};
pub use money::{Money, MoneyError, MoneyInput};
pub use page::{PageRequest, PageRequestError};
#[cfg(any(feature = "db", feature = "http"))]
pub use panic::catch_panic;
pub use principal::{Principal, Role, UnknownRole};
pub use problem::{FieldError, IntoProblem, Problem, Unavailable, Validation};
pub use unit::Unit;
