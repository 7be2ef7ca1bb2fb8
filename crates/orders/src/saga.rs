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

use async_trait::async_trait;
use diesel_async::AsyncPgConnection;
use eventlog::Subscriber;
use kernel::Envelope;
use orders_api::events as order_events;
use payments_api::events as payment_events;

use crate::commands::OrderService;

pub(crate) struct OrderSaga {
    pub(crate) service: OrderService,
}

#[async_trait]
impl Subscriber for OrderSaga {
    fn name(&self) -> &'static str {
        "orders_saga"
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
                self.service
                    .on_payment_captured(conn, captured.order_id, captured.payment_id)
                    .await
            }
            order_events::ORDER_CONFIRMED => self.service.commit_stock(order_id).await,
            order_events::ORDER_CANCELLED => self.service.compensate(order_id).await,
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
