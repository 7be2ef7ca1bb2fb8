//! Durations of every command and query, by name, for `/metrics`
//! (`command_duration_seconds`, `query_duration_seconds`), and a span for each.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use kernel::{OrderId, PageRequest};
use orders_api::{
    Accepted, ExpectedVersion, NewOrder, OrderCommands, OrderError, OrderFilter, OrderPage,
    OrderQueries, Read,
};
use tracing::Instrument;

/// Wraps the order services with timing.
pub(crate) struct Timed<T>(pub(crate) Arc<T>);

async fn time<R>(
    kind: &'static str,
    name: &'static str,
    work: impl Future<Output = Result<R, OrderError>>,
) -> Result<R, OrderError> {
    let started = Instant::now();
    let span = tracing::info_span!("order", kind, name);
    let result = work.instrument(span).await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    let metric = if kind == "command" {
        "command_duration_seconds"
    } else {
        "query_duration_seconds"
    };
    metrics::histogram!(metric, kind => name, "outcome" => outcome).record(started.elapsed());
    result
}

#[async_trait]
impl<T: OrderCommands> OrderCommands for Timed<T> {
    async fn place(&self, order: NewOrder, key: Option<String>) -> Result<Accepted, OrderError> {
        time("command", "place", self.0.place(order, key)).await
    }
    async fn confirm(
        &self,
        id: OrderId,
        token: String,
        expected: ExpectedVersion,
    ) -> Result<Accepted, OrderError> {
        time("command", "confirm", self.0.confirm(id, token, expected)).await
    }
    async fn ship(&self, id: OrderId, expected: ExpectedVersion) -> Result<Accepted, OrderError> {
        time("command", "ship", self.0.ship(id, expected)).await
    }
    async fn deliver(
        &self,
        id: OrderId,
        expected: ExpectedVersion,
    ) -> Result<Accepted, OrderError> {
        time("command", "deliver", self.0.deliver(id, expected)).await
    }
    async fn cancel(
        &self,
        id: OrderId,
        reason: String,
        expected: ExpectedVersion,
    ) -> Result<Accepted, OrderError> {
        time("command", "cancel", self.0.cancel(id, reason, expected)).await
    }
}

#[async_trait]
impl<T: OrderQueries> OrderQueries for Timed<T> {
    async fn get(&self, id: OrderId, min_version: Option<i64>) -> Result<Read, OrderError> {
        time("query", "get_order", self.0.get(id, min_version)).await
    }
    async fn list(&self, filter: OrderFilter, page: PageRequest) -> Result<OrderPage, OrderError> {
        time("query", "list_orders", self.0.list(filter, page)).await
    }
}
