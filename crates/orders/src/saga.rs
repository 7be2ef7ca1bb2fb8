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
//! No transaction waits on another module: what reaches products and payments (and
//! through payments the gateway: a refund can take up to the gateway's deadline) is the
//! saga's [`Subscriber::effects`], run before the subscription's transaction opens and
//! holding none of its connections; the transaction only confirms an order (on the
//! subscription's own connection, so a pool of one suffices) and moves the checkpoint.
//!
//! A captured payment is refunded when its order, looked at before the transaction, is
//! cancelled or missing. If the order is pending then and cancelled before the
//! transaction confirms it, the transaction leaves it alone: that cancellation came after
//! the capture was committed, so its own compensation (the request's, and this saga's on
//! its `order.cancelled`) finds the captured payment and refunds it.

use async_trait::async_trait;
use diesel_async::AsyncPgConnection;
use eventlog::Subscriber;
use kernel::{Envelope, OrderId, PaymentId, Subscribes, db};
use orders_api::events as order_events;
use orders_api::{OrderError, OrderStatus};
use payments_api::events as payment_events;

use crate::commands::OrderCommandHandler;
use crate::store::{load, load_for_update, save};

/// The saga's subscriber name (and checkpoint key).
pub(crate) const NAME: &str = "orders_saga";

/// What the saga reacts to: the event catalog's entry, and the filter its
/// [`Subscriber::effects`] and [`Subscriber::apply`] apply (an event of another type passes
/// by; a type listed here without an arm there is an error).
pub const SUBSCRIBES: Subscribes = Subscribes {
    subscriber: NAME,
    summary: "Drives the steps across modules: confirms a paid order (or refunds a payment \
              nobody wants), commits a confirmed order's stock, and refunds and releases a \
              cancelled one's.",
    sources: &[
        ("payments", &[payment_events::PAYMENT_CAPTURED]),
        (
            "orders",
            &[order_events::ORDER_CONFIRMED, order_events::ORDER_CANCELLED],
        ),
    ],
};

pub(crate) struct OrderSaga {
    pub(crate) handler: OrderCommandHandler,
}

impl OrderSaga {
    /// Outside any transaction: refunds a captured payment whose order is cancelled or
    /// gone.
    async fn refund_if_unwanted(&self, order_id: OrderId) -> anyhow::Result<()> {
        let order = {
            let mut conn = db::connect(&self.handler.pool).await?;
            load(&mut conn, order_id).await
        };
        match order {
            Ok(order) if order.status == OrderStatus::Cancelled => {
                self.handler.refund(order_id).await
            }
            Ok(_) => Ok(()),
            Err(OrderError::NotFound(_)) => self.handler.refund(order_id).await,
            Err(e) => Err(anyhow::anyhow!(e)),
        }
    }

    /// In the saga's transaction: confirms the order if it still waits for its payment.
    async fn confirm_if_pending(
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
            // Confirmed already; or cancelled or gone, refunded by the effects or by the
            // cancellation's compensation.
            Ok(_) | Err(OrderError::NotFound(_)) => Ok(()),
            Err(e) => Err(anyhow::anyhow!(e)),
        }
    }
}

/// The saga's step for an event of `event_type`, if it takes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `payment.captured`: confirm a pending order, or refund a payment nobody wants.
    Captured,
    /// `order.confirmed`: commit the reserved stock.
    CommitStock,
    /// `order.cancelled`: refund any payment, give the stock back.
    Compensate,
}

fn step_of(event_type: &str) -> Option<Step> {
    match event_type {
        payment_events::PAYMENT_CAPTURED => Some(Step::Captured),
        order_events::ORDER_CONFIRMED => Some(Step::CommitStock),
        order_events::ORDER_CANCELLED => Some(Step::Compensate),
        _ => None,
    }
}

#[async_trait]
impl Subscriber for OrderSaga {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Every event but the three it steps for (`order.created` above all): a step over
    /// those alone commits its checkpoint without waiting for the flush.
    fn ignores(&self, _source: &str, event: &Envelope) -> bool {
        !SUBSCRIBES.handles(&event.event_type)
    }

    async fn effects(&self, _source: &str, event: &Envelope) -> anyhow::Result<()> {
        if !SUBSCRIBES.handles(&event.event_type) {
            return Ok(());
        }
        let order_id = event.aggregate_id.into();
        match step_of(&event.event_type) {
            Some(Step::Captured) => {
                let captured: payment_events::PaymentCaptured = event.payload()?;
                self.refund_if_unwanted(captured.order_id).await
            }
            Some(Step::CommitStock) => self.handler.commit_stock(order_id).await,
            Some(Step::Compensate) => self.handler.compensate(order_id).await,
            None => anyhow::bail!(
                "{} is in SUBSCRIBES but the saga takes no step for it",
                event.event_type
            ),
        }
    }

    async fn apply(
        &self,
        conn: &mut AsyncPgConnection,
        _source: &str,
        event: &Envelope,
    ) -> anyhow::Result<()> {
        if SUBSCRIBES.handles(&event.event_type)
            && step_of(&event.event_type) == Some(Step::Captured)
        {
            let captured: payment_events::PaymentCaptured = event.payload()?;
            self.confirm_if_pending(conn, captured.order_id, captured.payment_id)
                .await?;
        }
        Ok(())
    }

    /// A batch with nothing to confirm (every step but a confirmation is an effect, done
    /// before the transaction) is done at once; any other goes event by event.
    async fn apply_batch(
        &self,
        _conn: &mut AsyncPgConnection,
        _source: &str,
        events: &[&Envelope],
    ) -> anyhow::Result<bool> {
        Ok(events
            .iter()
            .all(|event| event.event_type != payment_events::PAYMENT_CAPTURED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `SUBSCRIBES` (the catalog's entry, and the filter) names exactly the event types the
    /// saga takes a step for, of every log it could read.
    #[test]
    fn the_saga_steps_for_exactly_the_types_it_subscribes_to() {
        for log in [payment_events::LOG, order_events::LOG] {
            for contract in log.events {
                let event_type = contract.event_type;
                assert_eq!(
                    step_of(event_type).is_some(),
                    SUBSCRIBES.handles(event_type),
                    "{event_type}"
                );
            }
        }
        assert_eq!(
            SUBSCRIBES.unknown_in(&[payment_events::LOG, order_events::LOG]),
            Vec::<String>::new()
        );
    }
}
