//! The application service: charges and refunds through the [`PaymentGateway`], one
//! transaction per command holding the state change and its event.
//!
//! **One captured payment per order.** A charge takes a transaction-scoped advisory lock on
//! its order before it reads anything, so concurrent charges of one order run one after
//! the other: the first calls the gateway, the others find its captured payment and return
//! it without calling the gateway. The unique partial index
//! `payments_one_settled_per_order_idx` is the database's own guard behind the lock.
//!
//! **The gateway call sits inside the transaction**, after the lock and before the insert.
//! A gateway failure or an unknown token rolls back: nothing recorded. When the gateway
//! took the money but the payment could not be recorded, the charge is refunded through
//! the gateway (after checking that the commit did not in fact happen), so money is never
//! kept without a captured payment to show for it, barring a crash in that window.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::db::{self, DbContext, Pool};
use kernel::{FieldError, Money, NewEvent, OrderId, PaymentId};
use payments_api::{Payment, PaymentApi, PaymentError, PaymentStatus, events};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::SCHEMA;
use crate::domain::{Amount, StoredStatus};
use crate::gateway::{GatewayError, PaymentGateway};
use crate::schema::payments;

/// [`PaymentApi`] over Postgres and a [`PaymentGateway`].
#[derive(Clone)]
pub struct PaymentService {
    pool: Pool,
    gateway: Arc<dyn PaymentGateway>,
}

impl PaymentService {
    pub fn new(pool: Pool, gateway: Arc<dyn PaymentGateway>) -> Self {
        PaymentService { pool, gateway }
    }

    /// The gateway took the money for `id` but the transaction recording it failed with
    /// `error`. If the payment is recorded after all (only the commit's answer was lost),
    /// it is the result; otherwise the charge is refunded and `error` returned.
    async fn undo_unrecorded_charge(
        &self,
        id: PaymentId,
        amount: Money,
        error: PaymentError,
    ) -> Result<Payment, PaymentError> {
        match self.get(id).await {
            Ok(payment) => return Ok(payment),
            Err(PaymentError::NotFound(_)) => {}
            Err(lookup) => {
                tracing::error!(
                    payment_id = %id, error = format!("{error:?}"), lookup = format!("{lookup:?}"),
                    "the gateway captured a charge whose recording failed, and whether it was \
                     recorded is unknown; reconcile this payment with the gateway"
                );
                return Err(error);
            }
        }
        match self.gateway.refund(id, amount).await {
            Ok(()) => tracing::warn!(
                payment_id = %id, error = format!("{error:?}"),
                "recording a captured charge failed; the charge was refunded"
            ),
            Err(refund) => tracing::error!(
                payment_id = %id, error = format!("{error:?}"), refund = %refund,
                "recording a captured charge failed and refunding it failed too; \
                 reconcile this payment with the gateway"
            ),
        }
        Err(error)
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = payments)]
struct PaymentRow {
    id: Uuid,
    order_id: Uuid,
    amount: Decimal,
    status: StoredStatus,
    gateway_reference: Option<String>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<PaymentRow> for Payment {
    type Error = PaymentError;

    fn try_from(row: PaymentRow) -> Result<Self, PaymentError> {
        Ok(Payment {
            id: row.id.into(),
            order_id: row.order_id.into(),
            amount: Money::from_decimal(row.amount).map_err(|e| {
                PaymentError::Unexpected(anyhow::anyhow!("stored amount is invalid: {e}"))
            })?,
            status: row.status.0,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Raw: diesel has no advisory locks. Held until the transaction ends.
const LOCK_ORDER_CHARGES: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('emporium payment charge ' || $1::text, 0))";

/// Serializes every charge of `order_id` behind this transaction (released at its end).
async fn lock_order(conn: &mut AsyncPgConnection, order_id: OrderId) -> Result<(), PaymentError> {
    diesel::sql_query(LOCK_ORDER_CHARGES)
        .bind::<diesel::sql_types::Uuid, _>(order_id.as_uuid())
        .execute(conn)
        .await
        .db_context("locking the order's payments")?;
    Ok(())
}

/// The order's captured or refunded payment, if any; with `lock`, locked `FOR UPDATE` for
/// the rest of the transaction.
async fn settled(
    conn: &mut AsyncPgConnection,
    order_id: OrderId,
    lock: bool,
) -> Result<Option<PaymentRow>, PaymentError> {
    let query = payments::table
        .filter(payments::order_id.eq(order_id.as_uuid()))
        .filter(payments::status.ne(StoredStatus(PaymentStatus::Declined)))
        .select(PaymentRow::as_select());
    let row = if lock {
        query.for_update().first(conn).await
    } else {
        query.first(conn).await
    };
    Ok(row.optional().db_context("loading the order's payment")?)
}

/// What the transaction of a charge decided.
enum Charged {
    /// Captured now, or earlier (then returned as it is).
    Settled(Payment),
    /// Recorded as declined.
    Declined,
}

#[async_trait]
impl PaymentApi for PaymentService {
    #[tracing::instrument(name = "payments.charge", skip_all)]
    async fn charge(
        &self,
        order_id: OrderId,
        amount: Money,
        token: &str,
    ) -> Result<Payment, PaymentError> {
        let amount = Amount::parse(amount)
            .map_err(|message| PaymentError::Invalid(vec![FieldError::new("amount", message)]))?
            .money();
        let mut conn = db::connect(&self.pool).await?;
        // Set once the gateway has taken the money, to undo it if recording fails.
        let mut captured_at_gateway = None;
        let result = db::transaction(&mut conn, async |conn| {
            lock_order(conn, order_id).await?;
            if let Some(row) = settled(conn, order_id, false).await? {
                return Ok(Charged::Settled(row.try_into()?));
            }
            let id = PaymentId::generate();
            let (status, reference, decline_reason) =
                match self.gateway.charge(id, amount, token).await {
                    Ok(receipt) => {
                        captured_at_gateway = Some(id);
                        (PaymentStatus::Captured, Some(receipt.reference), None)
                    }
                    Err(GatewayError::Declined(reason)) => {
                        (PaymentStatus::Declined, None, Some(reason))
                    }
                    Err(GatewayError::Unavailable(reason)) => {
                        tracing::warn!(%order_id, payment_id = %id, reason, "payment gateway unavailable");
                        return Err(PaymentError::GatewayUnavailable(reason));
                    }
                    Err(GatewayError::InvalidToken(reason)) => {
                        return Err(PaymentError::InvalidToken(reason));
                    }
                    Err(e @ GatewayError::NotCharged(_)) => {
                        return Err(PaymentError::Unexpected(anyhow::anyhow!(
                            "the gateway answered a charge with: {e}"
                        )));
                    }
                };
            let now = Utc::now();
            let row = PaymentRow {
                id: id.as_uuid(),
                order_id: order_id.as_uuid(),
                amount: amount.amount(),
                status: StoredStatus(status),
                gateway_reference: reference,
                version: 1,
                created_at: now,
                updated_at: now,
            };
            let row = diesel::insert_into(payments::table)
                .values(&row)
                .returning(PaymentRow::as_returning())
                .get_result(conn)
                .await
                .db_context("recording payment")?;
            let version = row.version;
            let payment = Payment::try_from(row)?;
            let event = match &decline_reason {
                None => NewEvent::new(
                    events::PAYMENT_CAPTURED,
                    id,
                    version,
                    &events::PaymentCaptured {
                        payment_id: id,
                        order_id,
                        amount,
                    },
                ),
                Some(reason) => NewEvent::new(
                    events::PAYMENT_DECLINED,
                    id,
                    version,
                    &events::PaymentDeclined {
                        payment_id: id,
                        order_id,
                        amount,
                        reason: reason.clone(),
                    },
                ),
            };
            eventlog::append(conn, SCHEMA.name, &[event]).await?;
            match decline_reason {
                None => {
                    tracing::info!(%order_id, payment_id = %id, %amount, "payment captured");
                    Ok(Charged::Settled(payment))
                }
                Some(reason) => {
                    tracing::info!(%order_id, payment_id = %id, %amount, reason, "payment declined");
                    Ok(Charged::Declined)
                }
            }
        })
        .await;
        match (result, captured_at_gateway) {
            (Ok(Charged::Settled(payment)), _) => Ok(payment),
            (Ok(Charged::Declined), _) => Err(PaymentError::Declined { order_id }),
            (Err(error), Some(id)) => self.undo_unrecorded_charge(id, amount, error).await,
            (Err(error), None) => Err(error),
        }
    }

    #[tracing::instrument(name = "payments.refund", skip_all)]
    async fn refund(&self, order_id: OrderId) -> Result<Option<Payment>, PaymentError> {
        let mut conn = db::connect(&self.pool).await?;
        db::transaction(&mut conn, async |conn| {
            let Some(row) = settled(conn, order_id, true).await? else {
                return Ok(None);
            };
            let payment = Payment::try_from(row)?;
            if payment.status == PaymentStatus::Refunded {
                return Ok(Some(payment));
            }
            // The payment id is the gateway's idempotency key: should this transaction
            // fail after the gateway refunded, a retry refunds the same charge again,
            // which the gateway answers without paying out twice.
            self.gateway
                .refund(payment.id, payment.amount)
                .await
                .map_err(|e| match e {
                    GatewayError::Unavailable(reason) => PaymentError::GatewayUnavailable(reason),
                    other => PaymentError::Unexpected(anyhow::anyhow!(
                        "the gateway refused to refund payment {}: {other}",
                        payment.id
                    )),
                })?;
            let row = diesel::update(payments::table.find(payment.id.as_uuid()))
                .set((
                    payments::status.eq(StoredStatus(PaymentStatus::Refunded)),
                    payments::version.eq(payments::version + 1),
                    payments::updated_at.eq(Utc::now()),
                ))
                .returning(PaymentRow::as_returning())
                .get_result(conn)
                .await
                .db_context("refunding payment")?;
            let event = NewEvent::new(
                events::PAYMENT_REFUNDED,
                payment.id,
                row.version,
                &events::PaymentRefunded {
                    payment_id: payment.id,
                    order_id,
                    amount: payment.amount,
                },
            );
            eventlog::append(conn, SCHEMA.name, &[event]).await?;
            tracing::info!(%order_id, payment_id = %payment.id, amount = %payment.amount, "payment refunded");
            Ok(Some(row.try_into()?))
        })
        .await
    }

    #[tracing::instrument(name = "payments.get", skip_all)]
    async fn get(&self, id: PaymentId) -> Result<Payment, PaymentError> {
        let mut conn = db::connect(&self.pool).await?;
        payments::table
            .find(id.as_uuid())
            .select(PaymentRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .db_context("loading payment")?
            .ok_or(PaymentError::NotFound(id))?
            .try_into()
    }

    #[tracing::instrument(name = "payments.for_order", skip_all)]
    async fn for_order(&self, order_id: OrderId) -> Result<Vec<Payment>, PaymentError> {
        let mut conn = db::connect(&self.pool).await?;
        let rows: Vec<PaymentRow> = payments::table
            .filter(payments::order_id.eq(order_id.as_uuid()))
            .select(PaymentRow::as_select())
            .order((payments::created_at, payments::id))
            .load(&mut conn)
            .await
            .db_context("listing the order's payments")?;
        rows.into_iter().map(Payment::try_from).collect()
    }
}
