//! A refund: record the intent on the captured payment, ask the gateway outside any
//! transaction under a deadline, settle it `refunded` (see the module docs of `service`).

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use kernel::db::{self, DbContext};
use kernel::{NewEvent, OrderId};
use payments_api::{Payment, PaymentError, PaymentStatus, events};

use super::{PaymentRow, PaymentService, live, reload};
use crate::SCHEMA;
use crate::domain::StoredStatus;
use crate::gateway::GatewayError;
use crate::schema::payments;

/// What the first transaction of a refund found.
enum Intent {
    /// Nothing captured to give back.
    Nothing,
    /// Given back already.
    Done(Payment),
    /// Captured, with the refund's intent recorded: now the gateway may be asked.
    Recorded(Payment),
}

impl PaymentService {
    pub(super) async fn refund_order(
        &self,
        order_id: OrderId,
    ) -> Result<Option<Payment>, PaymentError> {
        match self.record_refund(order_id).await? {
            Intent::Nothing => Ok(None),
            Intent::Done(payment) => Ok(Some(payment)),
            Intent::Recorded(payment) => self.finish_refund(payment).await.map(Some),
        }
    }

    async fn record_refund(&self, order_id: OrderId) -> Result<Intent, PaymentError> {
        let mut conn = db::connect(&self.pool).await?;
        db::transaction(&mut conn, async |conn| {
            let Some(row) = live(conn, order_id, true).await? else {
                return Ok(Intent::Nothing);
            };
            let first_asked = row.refund_requested_at.is_none();
            let payment = Payment::try_from(row)?;
            match payment.status {
                PaymentStatus::Refunded => return Ok(Intent::Done(payment)),
                // Whoever settles it captured refunds it then, if the order wants that.
                PaymentStatus::Pending => return Ok(Intent::Nothing),
                _ => {}
            }
            if first_asked {
                diesel::update(payments::table.find(payment.id.as_uuid()))
                    .set((
                        payments::refund_requested_at.eq(Utc::now()),
                        payments::check_after.eq(self.settings.first_check(Utc::now())),
                    ))
                    .execute(conn)
                    .await
                    .db_context("recording a refund's intent")?;
            }
            Ok(Intent::Recorded(payment))
        })
        .await
    }

    /// Asks the gateway to give back the captured `payment`, whose refund's intent is
    /// recorded, then settles it `refunded` with its event; a payment someone else settled
    /// first is answered as it is.
    pub(crate) async fn finish_refund(&self, payment: Payment) -> Result<Payment, PaymentError> {
        // The payment id is the gateway's idempotency key: asking again, after a timeout or
        // a crash, refunds the same charge and pays out nothing more.
        let answer = tokio::time::timeout(
            self.settings.gateway_timeout,
            self.gateway.refund(payment.id, payment.amount),
        )
        .await;
        match answer {
            Ok(Ok(())) => {}
            Err(_) | Ok(Err(GatewayError::Indeterminate(_))) => {
                tracing::warn!(order_id = %payment.order_id, payment_id = %payment.id,
                    "the payment gateway gave no certain answer to a refund in time; it will be asked again");
                return Err(PaymentError::Pending {
                    order_id: payment.order_id,
                    payment_id: payment.id,
                });
            }
            Ok(Err(GatewayError::Unavailable(reason))) => {
                return Err(PaymentError::GatewayUnavailable(reason));
            }
            Ok(Err(other)) => {
                return Err(PaymentError::Unexpected(anyhow::anyhow!(
                    "the gateway refused to refund payment {}: {other}",
                    payment.id
                )));
            }
        }
        let mut conn = db::connect(&self.pool).await?;
        db::transaction(&mut conn, async |conn| {
            let row = diesel::update(
                payments::table
                    .find(payment.id.as_uuid())
                    .filter(payments::status.eq(StoredStatus(PaymentStatus::Captured))),
            )
            .set((
                payments::status.eq(StoredStatus(PaymentStatus::Refunded)),
                payments::version.eq(payments::version + 1),
                payments::updated_at.eq(Utc::now()),
            ))
            .returning(PaymentRow::as_returning())
            .get_result(conn)
            .await
            .optional()
            .db_context("refunding payment")?;
            let Some(row) = row else {
                return reload(conn, payment.id).await;
            };
            let event = NewEvent::new(
                events::PAYMENT_REFUNDED,
                payment.id,
                row.version,
                &events::PaymentRefunded {
                    payment_id: payment.id,
                    order_id: payment.order_id,
                    amount: payment.amount,
                },
            );
            eventlog::append(conn, SCHEMA.name, &[event]).await?;
            tracing::info!(order_id = %payment.order_id, payment_id = %payment.id, amount = %payment.amount, "payment refunded");
            row.try_into()
        })
        .await
    }
}
