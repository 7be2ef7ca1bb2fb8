//! The orders module, CQRS: commands change the write model (`orders` schema), a
//! projection feeds the denormalized read model (`orders_read` schema, possibly in another
//! database), queries read it; a saga drives the steps shared with products and payments
//! from the event log.
//!
//! Talks to users, products and payments only through their `-api` traits and events;
//! never reads their tables.

mod commands;
mod domain;
mod http;
mod projection;
mod queries;
mod rebuild;
mod saga;
mod schema;
mod sweeper;
mod timed;

use std::sync::Arc;
use std::time::Duration;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use eventlog::{EventSource, Subscription};
use kernel::db::Pool;
use orders_api::{OrderCommands, OrderQueries};

pub use commands::{Dependencies, FaultHook, OrderService};
pub use http::{endpoints, routes};
pub use queries::{OrderQueryService, READ_YOUR_WRITES_WAIT};
pub use rebuild::{Progress as RebuildProgress, RebuildError};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/orders");
const READ_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/orders_read");

/// The write model's schema.
pub const SCHEMA: kernel::db::Schema = kernel::db::Schema {
    name: "orders",
    migrations: &[&eventlog::MIGRATIONS, &MIGRATIONS],
};
/// The read model's schema (in `READ_DATABASE_URL`'s database).
pub const READ_SCHEMA: kernel::db::Schema = kernel::db::Schema {
    name: "orders_read",
    migrations: &[&eventlog::MIGRATIONS, &READ_MIGRATIONS],
};

/// Names of this module's event subscribers.
pub const PROJECTION: &str = projection::NAME;
pub const SAGA: &str = "orders_saga";

/// Settings of the orders module.
#[derive(Clone)]
pub struct Settings {
    /// How long a pending order holds its stock before it is cancelled as `expired`.
    pub order_expiry: Duration,
    /// How often the sweeper looks for expired orders and interrupted placements.
    pub sweep_every: Duration,
    /// How long a placement may stay unfinished before the sweeper releases it (a request
    /// still running after this is refused at its last step).
    pub placement_timeout: Duration,
    /// Tests only: stops a command at a named point, as a crash would.
    pub faults: Option<FaultHook>,
}

/// The event logs the orders module subscribes to.
pub struct Sources {
    pub orders: Arc<dyn EventSource>,
    pub users: Arc<dyn EventSource>,
    pub products: Arc<dyn EventSource>,
    pub payments: Arc<dyn EventSource>,
}

/// The assembled module.
pub struct OrderModule {
    service: OrderService,
    queries: OrderQueryService,
    write_pool: Pool,
    read_pool: Pool,
    settings: Settings,
}

impl OrderModule {
    pub fn new(write_pool: Pool, read_pool: Pool, deps: Dependencies, settings: Settings) -> Self {
        OrderModule {
            service: OrderService::new(write_pool.clone(), deps, settings.faults.clone()),
            queries: OrderQueryService::new(read_pool.clone()),
            write_pool,
            read_pool,
            settings,
        }
    }

    /// The command side, timed per command.
    pub fn commands(&self) -> Arc<dyn OrderCommands> {
        Arc::new(timed::Timed(Arc::new(self.service.clone())))
    }

    /// The query side, timed per query.
    pub fn queries(&self) -> Arc<dyn OrderQueries> {
        Arc::new(timed::Timed(Arc::new(self.queries.clone())))
    }

    /// The projection (order, user and product events into the read model) and the saga
    /// (order and payment events into cross-module steps).
    pub fn subscriptions(&self, sources: &Sources) -> Vec<Subscription> {
        let projection: Arc<dyn eventlog::Subscriber> =
            Arc::new(projection::OrderProjection::live());
        let saga: Arc<dyn eventlog::Subscriber> = Arc::new(saga::OrderSaga {
            service: self.service.clone(),
        });
        let read = |source: &Arc<dyn EventSource>| Subscription {
            subscriber: projection.clone(),
            source: source.clone(),
            pool: self.read_pool.clone(),
            schema: READ_SCHEMA.name,
        };
        let write = |source: &Arc<dyn EventSource>| Subscription {
            subscriber: saga.clone(),
            source: source.clone(),
            pool: self.write_pool.clone(),
            schema: SCHEMA.name,
        };
        vec![
            read(&sources.orders),
            read(&sources.users),
            read(&sources.products),
            write(&sources.orders),
            write(&sources.payments),
        ]
    }

    /// Starts rebuilding the read model from the event log in the background; queries keep
    /// answering from the current one until the new one takes over. Returns the generation
    /// being built.
    pub async fn rebuild(&self, sources: &Sources) -> Result<i32, RebuildError> {
        let generation = rebuild::begin(&self.read_pool).await?;
        let (pool, sources) = (self.read_pool.clone(), Self::read_sources(sources));
        tokio::spawn(async move {
            if let Err(error) = rebuild::run(pool, sources, generation).await {
                tracing::error!(
                    generation,
                    error = format!("{error:#}"),
                    "rebuild failed; it can be started again"
                );
            }
        });
        Ok(generation)
    }

    /// The rebuild under way, if any.
    pub async fn rebuild_progress(
        &self,
        sources: &Sources,
    ) -> anyhow::Result<Option<RebuildProgress>> {
        rebuild::progress_of(&self.read_pool, &Self::read_sources(sources)).await
    }

    fn read_sources(sources: &Sources) -> Vec<Arc<dyn EventSource>> {
        vec![
            sources.orders.clone(),
            sources.users.clone(),
            sources.products.clone(),
        ]
    }

    /// Starts the sweeper (expired orders, interrupted placements).
    pub fn spawn_sweeper(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(sweeper::run(self.service.clone(), self.settings.clone()))
    }

    /// One sweep now (for tests and tools).
    pub async fn sweep(&self) -> anyhow::Result<()> {
        sweeper::sweep(&self.service, &self.settings).await
    }
}
