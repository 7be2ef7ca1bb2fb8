//! Durations of every command, by name, for `/metrics`
//! (`emporium_command_duration_seconds`), and a span for each.

use std::sync::Arc;

use async_trait::async_trait;
use kernel::OrderId;
use kernel::timing::Timing;
use orders_api::{Accepted, ExpectedVersion, NewOrder, OrderCommands, OrderError, Scope};

/// Wraps the command handler with timing.
pub(crate) struct Timed<T>(pub(crate) Arc<T>);

static TIMING: Timing = Timing::new(
    "emporium_command_duration_seconds",
    "command",
    "Time an order command took, by command and outcome (ok or error).",
);

async fn time<R>(
    name: &'static str,
    work: impl Future<Output = Result<R, OrderError>>,
) -> Result<R, OrderError> {
    let span = tracing::info_span!("order", kind = "command", name);
    TIMING.time(name, span, work).await
}

#[async_trait]
impl<T: OrderCommands> OrderCommands for Timed<T> {
    async fn place(&self, order: NewOrder, key: Option<String>) -> Result<Accepted, OrderError> {
        time("place", self.0.place(order, key)).await
    }
    async fn confirm(
        &self,
        id: OrderId,
        token: String,
        expected: ExpectedVersion,
        scope: Scope,
    ) -> Result<Accepted, OrderError> {
        time("confirm", self.0.confirm(id, token, expected, scope)).await
    }
    async fn ship(&self, id: OrderId, expected: ExpectedVersion) -> Result<Accepted, OrderError> {
        time("ship", self.0.ship(id, expected)).await
    }
    async fn deliver(
        &self,
        id: OrderId,
        expected: ExpectedVersion,
    ) -> Result<Accepted, OrderError> {
        time("deliver", self.0.deliver(id, expected)).await
    }
    async fn cancel(
        &self,
        id: OrderId,
        reason: String,
        expected: ExpectedVersion,
        scope: Scope,
    ) -> Result<Accepted, OrderError> {
        time("cancel", self.0.cancel(id, reason, expected, scope)).await
    }
}
