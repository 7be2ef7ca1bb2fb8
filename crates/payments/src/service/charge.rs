//! A charge: record it `pending` under the order's lock, ask the gateway outside any
//! transaction under a deadline, settle it (see the module docs of `service`).

use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::db::{self, DbContext};
use kernel::{FieldError, Money, NewEvent, OrderId, PaymentId};
use payments_api::{Payment, PaymentError, PaymentStatus, events};

use super::{PaymentRow, PaymentService, live, reload};
use crate::SCHEMA;
use crate::domain::{Amount, StoredStatus};
use crate::gateway::GatewayError;
use crate::schema::payments;

/// Raw: diesel has no advisory locks. Held until the transaction ends.
const LOCK_ORDER_CHARGES: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('emporium payment charge ' || $1::text, 0))";

/// Serializes every charge of `order_id` behind this transaction (released at its end).
async fn lock_order(conn: &mut AsyncPgConnection, order_id: OrderId) -> Result<(), PaymentError> {
    kernel::db::prepared(
        diesel::sql_query(LOCK_ORDER_CHARGES)
            .bind::<diesel::sql_types::Uuid, _>(order_id.as_uuid()),
    )
    .execute(conn)
    .await
    .db_context("locking the order's payments")?;
    Ok(())
}

/// What the first transaction of a charge found or did.
enum Begun {
    /// The order is paid already (captured, or refunded since): nothing to charge.
    Paid(Payment),
    /// Another charge of the order is pending, recorded at this time.
    Waiting(PaymentId, chrono::DateTime<Utc>),
    /// A new payment, committed `pending`: now the gateway may be asked.
    Recorded(PaymentId),
}

/// The gateway's outcome of a pending payment, as it is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settlement {
    Captured { reference: String },
    Declined { reason: String },
    Failed { reason: String },
}

/// How long a charge that finds another pending pauses before it looks again, at first
/// and at most.
const WAIT_FIRST: Duration = Duration::from_millis(20);
const WAIT_MOST: Duration = Duration::from_millis(250);

impl PaymentService {
    pub(super) async fn charge_order(
        &self,
        order_id: OrderId,
        amount: Money,
        token: &str,
    ) -> Result<Payment, PaymentError> {
        let amount = Amount::parse(amount)
            .map_err(|message| PaymentError::Invalid(vec![FieldError::new("amount", message)]))?
            .money();
        let mut pause = WAIT_FIRST;
        let id = loop {
            match self.begin(order_id, amount).await? {
                Begun::Paid(payment) => return Ok(payment),
                Begun::Recorded(id) => break id,
                Begun::Waiting(payment_id, recorded_at) => {
                    let call_over = recorded_at
                        + chrono::Duration::from_std(self.settings.gateway_timeout)
                            .unwrap_or(chrono::Duration::MAX);
                    if Utc::now() >= call_over {
                        return Err(PaymentError::AlreadyPending {
                            order_id,
                            payment_id,
                        });
                    }
                    // Another charge of this order is asking the gateway, and holds no
                    // lock meanwhile: wait for its outcome until its call's deadline.
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(WAIT_MOST);
                }
            }
        };
        let answer = tokio::time::timeout(
            self.settings.gateway_timeout,
            self.gateway.charge(id, amount, token),
        )
        .await;
        let settlement = match answer {
            Err(_) | Ok(Err(GatewayError::Indeterminate(_))) => {
                tracing::warn!(%order_id, payment_id = %id, timeout = ?self.settings.gateway_timeout,
                    "the payment gateway gave no certain answer in time; the payment stays pending");
                return Err(PaymentError::Pending {
                    order_id,
                    payment_id: id,
                });
            }
            Ok(Ok(receipt)) => {
                self.fault("after_gateway_charge")?;
                Settlement::Captured {
                    reference: receipt.reference,
                }
            }
            Ok(Err(GatewayError::Declined(reason))) => Settlement::Declined { reason },
            Ok(Err(GatewayError::Unavailable(reason))) => Settlement::Failed { reason },
            // Voided: the reconciler gave up on this call before it reached the gateway,
            // and closed the key; the payment is settled failed already.
            Ok(Err(e @ (GatewayError::NotCharged(_) | GatewayError::Voided(_)))) => {
                Settlement::Failed {
                    reason: e.to_string(),
                }
            }
            Ok(Err(GatewayError::InvalidToken(reason))) => {
                self.forget(id).await?;
                return Err(PaymentError::InvalidToken {
                    token: token.to_owned(),
                    reason,
                });
            }
        };
        let payment = self.settle(id, settlement.clone()).await?;
        match (payment.status, settlement) {
            (PaymentStatus::Captured | PaymentStatus::Refunded, _) => Ok(payment),
            // The gateway took the money, but the payment was settled as not charged
            // meanwhile. The reconciler settles a key the gateway never heard of `failed`
            // only after voiding it, so a gateway that honours voids never gets here; one
            // that does not (or a payment settled by hand) gets its money given back,
            // since no captured payment will ever show for it.
            (PaymentStatus::Declined | PaymentStatus::Failed, Settlement::Captured { .. }) => {
                match self.gateway.refund(id, amount).await {
                    Ok(()) => tracing::warn!(%order_id, payment_id = %id,
                        "the gateway captured a payment already settled as not charged; the charge was given back"),
                    Err(error) => tracing::error!(%order_id, payment_id = %id, %error,
                        "the gateway captured a payment already settled as not charged, and giving it back failed; \
                         reconcile this payment with the gateway"),
                }
                Err(PaymentError::GatewayUnavailable(
                    "the gateway answered after the payment was settled as failed; nothing was kept"
                        .to_owned(),
                ))
            }
            (PaymentStatus::Declined, _) => Err(PaymentError::Declined { order_id }),
            (PaymentStatus::Failed, Settlement::Failed { reason }) => {
                Err(PaymentError::GatewayUnavailable(reason))
            }
            (PaymentStatus::Failed, _) => Err(PaymentError::GatewayUnavailable(
                "the payment gateway failed".to_owned(),
            )),
            (PaymentStatus::Pending, _) => Err(PaymentError::Pending {
                order_id,
                payment_id: id,
            }),
        }
    }

    /// The first transaction: under the order's lock, the order's live payment, or a new
    /// `pending` one.
    async fn begin(&self, order_id: OrderId, amount: Money) -> Result<Begun, PaymentError> {
        let mut conn = db::connect(&self.pool).await?;
        db::transaction(&mut conn, async |conn| {
            lock_order(conn, order_id).await?;
            if let Some(row) = live(conn, order_id, false).await? {
                let payment = Payment::try_from(row)?;
                return Ok(match payment.status {
                    PaymentStatus::Pending => Begun::Waiting(payment.id, payment.created_at),
                    _ => Begun::Paid(payment),
                });
            }
            let id = PaymentId::generate();
            let now = Utc::now();
            diesel::insert_into(payments::table)
                .values(&PaymentRow {
                    id: id.as_uuid(),
                    order_id: order_id.as_uuid(),
                    amount: amount.amount(),
                    status: StoredStatus(PaymentStatus::Pending),
                    gateway_reference: None,
                    version: 0,
                    refund_requested_at: None,
                    check_after: Some(self.settings.first_check(now)),
                    checks: 0,
                    created_at: now,
                    updated_at: now,
                })
                .execute(conn)
                .await
                .db_context("recording a pending payment")?;
            Ok(Begun::Recorded(id))
        })
        .await
    }

    /// The gateway did not know the token: the pending payment is dropped, as if never
    /// made (nothing was published for it).
    async fn forget(&self, id: PaymentId) -> Result<(), PaymentError> {
        let mut conn = db::connect(&self.pool).await?;
        diesel::delete(
            payments::table
                .find(id.as_uuid())
                .filter(payments::status.eq(StoredStatus(PaymentStatus::Pending))),
        )
        .execute(&mut conn)
        .await
        .db_context("dropping a payment the gateway refused")?;
        Ok(())
    }

    /// Settles the pending payment `id` with `settlement` and its event, in one
    /// transaction; when someone settled it first, answers the outcome they recorded.
    pub(crate) async fn settle(
        &self,
        id: PaymentId,
        settlement: Settlement,
    ) -> Result<Payment, PaymentError> {
        let mut conn = db::connect(&self.pool).await?;
        db::transaction(&mut conn, async |conn| {
            let (status, reference) = match &settlement {
                Settlement::Captured { reference } => {
                    (PaymentStatus::Captured, Some(reference.clone()))
                }
                Settlement::Declined { .. } => (PaymentStatus::Declined, None),
                Settlement::Failed { .. } => (PaymentStatus::Failed, None),
            };
            let row = diesel::update(
                payments::table
                    .find(id.as_uuid())
                    .filter(payments::status.eq(StoredStatus(PaymentStatus::Pending))),
            )
            .set((
                payments::status.eq(StoredStatus(status)),
                payments::gateway_reference.eq(reference),
                payments::version.eq(1),
                payments::updated_at.eq(Utc::now()),
            ))
            .returning(PaymentRow::as_returning())
            .get_result(conn)
            .await
            .optional()
            .db_context("settling payment")?;
            let Some(row) = row else {
                return reload(conn, id).await;
            };
            let payment = Payment::try_from(row)?;
            let (order_id, amount) = (payment.order_id, payment.amount);
            let event = match settlement {
                Settlement::Captured { .. } => {
                    tracing::info!(%order_id, payment_id = %id, %amount, "payment captured");
                    NewEvent::new(
                        events::PAYMENT_CAPTURED,
                        id,
                        1,
                        &events::PaymentCaptured {
                            payment_id: id,
                            order_id,
                            amount,
                        },
                    )
                }
                Settlement::Declined { reason } => {
                    tracing::info!(%order_id, payment_id = %id, %amount, reason, "payment declined");
                    NewEvent::new(
                        events::PAYMENT_DECLINED,
                        id,
                        1,
                        &events::PaymentDeclined {
                            payment_id: id,
                            order_id,
                            amount,
                            reason,
                        },
                    )
                }
                Settlement::Failed { reason } => {
                    tracing::warn!(%order_id, payment_id = %id, %amount, reason, "payment failed at the gateway");
                    NewEvent::new(
                        events::PAYMENT_FAILED,
                        id,
                        1,
                        &events::PaymentFailed {
                            payment_id: id,
                            order_id,
                            amount,
                            reason,
                        },
                    )
                }
            };
            eventlog::append(conn, SCHEMA.name, &[event]).await?;
            Ok(payment)
        })
        .await
    }
}
