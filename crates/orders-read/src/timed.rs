//! Durations of every query, by name, for `/metrics`
//! (`emporium_query_duration_seconds`), and a span for each.

use std::sync::Arc;

use async_trait::async_trait;
use kernel::timing::Timing;
use kernel::{OrderId, PageRequest};
use orders_api::{OrderError, OrderFilter, OrderPage, OrderQueries, Read};

/// Wraps the read model's queries with timing.
pub(crate) struct Timed<T>(pub(crate) Arc<T>);

static TIMING: Timing = Timing::new(
    "emporium_query_duration_seconds",
    "query",
    "Time an order read-model query took, by query and outcome (ok or error).",
);

async fn time<R>(
    name: &'static str,
    work: impl Future<Output = Result<R, OrderError>>,
) -> Result<R, OrderError> {
    let span = tracing::info_span!("order", kind = "query", name);
    TIMING.time(name, span, work).await
}

#[async_trait]
impl<T: OrderQueries> OrderQueries for Timed<T> {
    async fn get(&self, id: OrderId, min_version: Option<i64>) -> Result<Read, OrderError> {
        time("get_order", self.0.get(id, min_version)).await
    }
    async fn list(&self, filter: OrderFilter, page: PageRequest) -> Result<OrderPage, OrderError> {
        time("list_orders", self.0.list(filter, page)).await
    }
}
