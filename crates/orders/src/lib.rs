//! The orders module's write side (CQRS): commands change the write model (schema
//! `orders`) and append their events to its log in the same transaction; a saga drives
//! the steps shared with products and payments from the event log; a sweeper expires
//! pending orders. Serves `/commands/orders`.
//!
//! Knows nothing of the read model (`crates/orders-read`, schema `orders_read`): it does
//! not depend on it (only its end-to-end suite does, as a dev-dependency) and never reads
//! it; the read side learns of orders only from the events published here. Talks to
//! users, products and payments only through their `-api` traits and events; never reads
//! their tables (a placement's stock is reserved in its transaction by the products
//! module's own code, acting as that module's role: `kernel::db::Unit`).

mod commands;
mod compensation;
mod domain;
mod http;
mod lifecycle;
mod placement;
mod saga;
mod schema;
mod state;
mod store;
mod sweeper;
mod timed;

use std::sync::Arc;
use std::time::Duration;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use eventlog::{EventSource, Subscription};
use kernel::db::Pool;
use orders_api::OrderCommands;

pub use commands::{Dependencies, FaultHook, OrderCommandHandler};
pub use http::{endpoints, routes};
pub use saga::SUBSCRIBES;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/orders");

/// The write model's schema.
pub const SCHEMA: kernel::db::Schema = kernel::db::Schema {
    name: "orders",
    migrations: &[&eventlog::MIGRATIONS, &MIGRATIONS],
};

/// The saga's subscriber name.
pub const SAGA: &str = saga::NAME;

/// Settings of the write side.
#[derive(Clone)]
pub struct Settings {
    /// How long a pending order holds its stock before it is cancelled as `expired`.
    pub order_expiry: Duration,
    /// How often the sweeper looks for expired orders and forgets old idempotency keys.
    pub sweep_every: Duration,
    /// How long a confirm's fence holds the order if the confirm crashed before lifting it
    /// (see `domain::Fence`): longer than a charge can take, its wait for another pending
    /// payment included (the app sets twice `PAYMENT_GATEWAY_TIMEOUT` plus a margin).
    pub confirm_fence: Duration,
    /// How long a placement's `Idempotency-Key` is remembered (`IDEMPOTENCY_TTL`): an
    /// older one is free again, and the sweeper deletes it.
    pub idempotency_ttl: Duration,
    /// How many pending orders one customer may hold at once (`MAX_PENDING_ORDERS`), so
    /// nobody can hoard the stock.
    pub max_pending_orders: u32,
    /// Tests only: stops a command at a named point, as a crash would.
    pub faults: Option<FaultHook>,
}

/// The event logs the saga subscribes to.
pub struct Sources {
    pub orders: Arc<dyn EventSource>,
    pub payments: Arc<dyn EventSource>,
}

/// The assembled write side.
pub struct OrderWriteSide {
    handler: OrderCommandHandler,
    pool: Pool,
    sources: Sources,
    settings: Settings,
}

impl OrderWriteSide {
    pub fn new(pool: Pool, deps: Dependencies, sources: Sources, settings: Settings) -> Self {
        OrderWriteSide {
            handler: OrderCommandHandler::new(pool.clone(), deps, &settings),
            pool,
            sources,
            settings,
        }
    }

    /// The commands, timed per command.
    pub fn commands(&self) -> Arc<dyn OrderCommands> {
        Arc::new(timed::Timed(Arc::new(self.handler.clone())))
    }

    /// Whose an order is, for the payments routes (`payments_api::OrderOwners`): read
    /// from the write model, so a payment is never hidden from its owner by lag.
    pub fn owners(&self) -> Arc<dyn payments_api::OrderOwners> {
        Arc::new(store::Owners(self.pool.clone()))
    }

    /// The saga (order and payment events into cross-module steps).
    pub fn subscriptions(&self) -> Vec<Subscription> {
        let saga: Arc<dyn eventlog::Subscriber> = Arc::new(saga::OrderSaga {
            handler: self.handler.clone(),
        });
        [&self.sources.orders, &self.sources.payments]
            .into_iter()
            .map(|source| Subscription {
                subscriber: saga.clone(),
                source: source.clone(),
                pool: self.pool.clone(),
                schema: SCHEMA.name,
            })
            .collect()
    }

    /// Starts the sweeper (expired orders, old idempotency keys).
    pub fn spawn_sweeper(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(sweeper::run(self.handler.clone(), self.settings.clone()))
    }

    /// One sweep now (for tests and tools).
    pub async fn sweep(&self) -> anyhow::Result<()> {
        sweeper::sweep(&self.handler, &self.settings).await
    }
}
