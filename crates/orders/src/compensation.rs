//! Compensation and the stock steps after a status change: refund any payment and give
//! the stock back after a cancellation, commit the reserved stock after a confirmation.
//! Each is idempotent; the request path runs it eagerly and the saga runs it again from
//! the event log (`order.cancelled`, `order.confirmed`).

use kernel::OrderId;
use payments_api::PaymentError;
use products_api::{ProductError, ReservationStatus};

use crate::commands::OrderCommandHandler;

impl OrderCommandHandler {
    /// Refunds any payment and gives the order's stock back, whatever state the
    /// reservation is in. Idempotent; the saga runs it on every `order.cancelled`.
    pub(crate) async fn compensate(&self, id: OrderId) -> anyhow::Result<()> {
        self.refund(id).await?;
        self.give_stock_back(id).await
    }

    /// Refunds the order's captured payment, if any. A refund the gateway cannot make now
    /// (down, or no answer in time) is recorded by the payments module, which retries it
    /// until the gateway confirms it: for the order it is done.
    pub(crate) async fn refund(&self, id: OrderId) -> anyhow::Result<()> {
        match self.deps.payments.refund(id).await {
            Ok(_) => Ok(()),
            Err(e @ (PaymentError::GatewayUnavailable(_) | PaymentError::Pending { .. })) => {
                tracing::warn!(order_id = %id, error = %e, "refund recorded; the payments module retries it");
                Ok(())
            }
            Err(e) => Err(anyhow::anyhow!(e).context("refunding")),
        }
    }

    async fn give_stock_back(&self, id: OrderId) -> anyhow::Result<()> {
        let products = &self.deps.products;
        let result = match products.reservation(id).await {
            Ok(ReservationStatus::Reserved) => products.release(id).await,
            Ok(ReservationStatus::Committed) => products.return_stock(id).await,
            Ok(ReservationStatus::Released | ReservationStatus::Returned)
            | Err(ProductError::ReservationNotFound(_)) => Ok(()),
            Err(e) => Err(e),
        };
        result.map_err(|e| anyhow::anyhow!(e).context("giving stock back"))
    }

    /// Commits a confirmed order's reserved stock. Idempotent; also run by the saga.
    pub(crate) async fn commit_stock(&self, id: OrderId) -> anyhow::Result<()> {
        match self.deps.products.commit(id).await {
            // Already committed, or given back by a later cancellation.
            Ok(()) | Err(ProductError::ReservationClosed { .. }) => Ok(()),
            Err(e) => Err(anyhow::anyhow!(e).context("committing stock")),
        }
    }
}
