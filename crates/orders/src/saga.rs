//! The order saga: a process manager that drives the cross-module steps from the event
//! log, so they finish even when the process that started them died halfway.
//!
//! | event | step |
//! |---|---|
//! | `payment.captured` | a pending order is confirmed (in this subscription's transaction); a cancelled or missing one is refunded |
//! | `order.confirmed` | the reserved stock is committed |
//! | `order.cancelled` | any payment is refunded and the stock given back |
//!
//! Every step is idempotent, so delivering an event again changes nothing.
//!
//! The subscription's transaction holds a connection of the orders pool, so a step takes
//! no other one (with a pool of one it would never come): the confirmation is written on
//! the subscription's connection, and the other steps reach products and payments through
//! their `-api` traits, on those modules' own pools.

use async_trait::async_trait;
use diesel_async::AsyncPgConnection;
use eventlog::Subscriber;
use kernel::{Envelope, OrderId, PaymentId};
use orders_api::events as order_events;
use orders_api::{OrderError, OrderStatus};
use payments_api::events as payment_events;

use crate::commands::OrderCommandHandler;
use crate::store::{load_for_update, save};

/// The saga's subscriber name (and checkpoint key).
pub(crate) const NAME: &str = "orders_saga";

pub(crate) struct OrderSaga {
    pub(crate) handler: OrderCommandHandler,
}

impl OrderSaga {
    /// The answer to a captured payment: confirm the order if it still waits for it
    /// (inside the saga's transaction), refund if the order is cancelled or gone.
    async fn on_payment_captured(
        &self,
        conn: &mut AsyncPgConnection,
        order_id: OrderId,
        payment_id: PaymentId,
    ) -> anyhow::Result<()> {
        match load_for_update(conn, order_id).await {
            Ok(mut order) if order.status == OrderStatus::Pending => {
                let previous = order.version;
                let event = order.confirm(payment_id)?;
                save(conn, &order, previous, event).await?;
                tracing::info!(%order_id, %payment_id, "saga confirmed an order whose payment was captured");
                Ok(())
            }
            Ok(order) if order.status == OrderStatus::Cancelled => {
                self.handler.refund(order_id).await
            }
            Ok(_) => Ok(()),
            Err(OrderError::NotFound(_)) => self.handler.refund(order_id).await,
            Err(e) => Err(anyhow::anyhow!(e)),
        }
    }
}

#[async_trait]
impl Subscriber for OrderSaga {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(
        &self,
        conn: &mut AsyncPgConnection,
        _source: &str,
        event: &Envelope,
    ) -> anyhow::Result<()> {
        let order_id = event.aggregate_id.into();
        match event.event_type.as_str() {
            payment_events::PAYMENT_CAPTURED => {
                let captured: payment_events::PaymentCaptured = event.payload()?;
                self.on_payment_captured(conn, captured.order_id, captured.payment_id)
                    .await
            }
            order_events::ORDER_CONFIRMED => self.handler.commit_stock(order_id).await,
            order_events::ORDER_CANCELLED => self.handler.compensate(order_id).await,
            _ => Ok(()),
        }
    }

    /// A batch of events the saga has nothing to do for (placements, shipments, declines)
    /// is done at once; any other goes event by event.
    async fn apply_batch(
        &self,
        _conn: &mut AsyncPgConnection,
        _source: &str,
        events: &[&Envelope],
    ) -> anyhow::Result<bool> {
        Ok(events.iter().all(|event| {
            !matches!(
                event.event_type.as_str(),
                payment_events::PAYMENT_CAPTURED
                    | order_events::ORDER_CONFIRMED
                    | order_events::ORDER_CANCELLED
            )
        }))
    }
}
