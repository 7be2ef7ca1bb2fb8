//! The orders module's read side (CQRS): the `orders_read` projection builds the
//! denormalized read model (schema `orders_read`, possibly in another database) from
//! order, user and product events; queries read it, waiting a little for a version they
//! were asked for (read-your-writes); rebuilds replay the log into a new generation while
//! queries keep answering. Serves `/queries/orders`.
//!
//! Knows only events and `-api` types: never the write side (`crates/orders`, schema
//! `orders`) nor any other module's tables. Only the projection writes `orders_read`.

mod cleanup;
mod http;
mod projection;
mod queries;
mod rebuild;
mod schema;
mod states;
mod timed;
mod waits;

use std::sync::Arc;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use eventlog::{EventSource, Subscription};
use kernel::db::Pool;
use orders_api::OrderQueries;

pub use cleanup::CLEANUP_EVERY;
pub use http::{endpoints, routes};
/// Public so the read side's own suite can drive it with events directly.
pub use projection::{OrderProjection, SUBSCRIBES};
pub use queries::{LIST_TOTAL, MAX_WAITERS, OrderReadModel, READ_YOUR_WRITES_WAIT};
pub use rebuild::{Progress as RebuildProgress, RebuildError};
pub use waits::MOVED;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/orders_read");

/// The read model's schema (in `READ_DATABASE_URL`'s database).
pub const SCHEMA: kernel::db::Schema = kernel::db::Schema {
    name: "orders_read",
    migrations: &[&eventlog::MIGRATIONS, &MIGRATIONS],
};

/// The projection's subscriber name.
pub const PROJECTION: &str = projection::NAME;

/// The event logs the projection reads.
pub struct Sources {
    pub orders: Arc<dyn EventSource>,
    pub users: Arc<dyn EventSource>,
    pub products: Arc<dyn EventSource>,
}

impl Sources {
    fn all(&self) -> Vec<Arc<dyn EventSource>> {
        vec![
            self.orders.clone(),
            self.users.clone(),
            self.products.clone(),
        ]
    }
}

/// The assembled read side.
pub struct OrderReadSide {
    read_model: OrderReadModel,
    pool: Pool,
    sources: Sources,
    /// Wakes `min_version` waiters when the projection moves, once [`Self::listen`] ran.
    _listener: Option<Arc<eventlog::Listener>>,
}

impl OrderReadSide {
    pub fn new(pool: Pool, sources: Sources) -> Self {
        OrderReadSide {
            read_model: OrderReadModel::new(pool.clone()),
            pool,
            sources,
            _listener: None,
        }
    }

    /// `min_version` waits woken by the projection (of any instance) instead of polling:
    /// a `LISTEN` on [`MOVED`] in `read_url`, the read model's database; at most
    /// `max_waiters` wait at once, and one more is answered at once with what the read
    /// model holds. Needs a tokio runtime.
    pub fn listen(mut self, read_url: &str, max_waiters: usize) -> Self {
        let listener = Arc::new(eventlog::Listener::start(read_url, MOVED));
        let waits = waits::Waits::new(Some(listener.subscribe()), max_waiters);
        self.read_model = self.read_model.with_waits(waits);
        self._listener = Some(listener);
        self
    }

    /// The queries, timed per query.
    pub fn queries(&self) -> Arc<dyn OrderQueries> {
        Arc::new(timed::Timed(Arc::new(self.read_model.clone())))
    }

    /// The projection (order, user and product events into the read model).
    pub fn subscriptions(&self) -> Vec<Subscription> {
        let projection: Arc<dyn eventlog::Subscriber> =
            Arc::new(projection::OrderProjection::live());
        self.sources
            .all()
            .into_iter()
            .map(|source| Subscription {
                subscriber: projection.clone(),
                source,
                pool: self.pool.clone(),
                schema: SCHEMA.name,
            })
            .collect()
    }

    /// Starts rebuilding the read model from the event log in the background; queries keep
    /// answering from the current one until the new one takes over. Returns the generation
    /// being built.
    pub async fn rebuild(&self) -> Result<i32, RebuildError> {
        let generation = rebuild::begin(&self.pool).await?;
        let (pool, sources) = (self.pool.clone(), self.sources.all());
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

    /// Deletes every retired generation (replaced by a rebuild, or an abandoned rebuild's),
    /// a bounded batch per transaction; finishes a deletion that was cut short.
    pub async fn delete_retired_generations(&self) -> anyhow::Result<()> {
        cleanup::delete_retired(&self.pool).await
    }

    /// Starts this process's cleaner: [`OrderReadSide::delete_retired_generations`] now
    /// and every [`CLEANUP_EVERY`], so a deletion cut short by a crash is finished.
    pub fn spawn_cleaner(&self) -> tokio::task::JoinHandle<()> {
        cleanup::spawn(self.pool.clone())
    }

    /// The rebuild under way, if any.
    pub async fn rebuild_progress(&self) -> anyhow::Result<Option<RebuildProgress>> {
        rebuild::progress_of(&self.pool, &self.sources.all()).await
    }
}
