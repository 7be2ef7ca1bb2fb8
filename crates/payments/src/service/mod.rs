//! The application service: charges and refunds through the [`PaymentGateway`], treated as
//! the external system it is.
//!
//! **Record, ask, settle.** A charge first commits its payment `pending` (version 0, no
//! event), then asks the gateway with the payment id as idempotency key, outside any
//! transaction and holding no lock, under a deadline ([`PaymentSettings::gateway_timeout`]);
//! then it settles the row in a second transaction, with its event (`captured`,
//! `declined` or `failed`, version 1). No answer in time leaves it `pending`: its outcome
//! is then the gateway's to tell, by key. A refund records its intent
//! (`refund_requested_at`) the same way before it asks, and settles `refunded` after.
//! Settling is compare-and-set on the status, so whoever settles a payment first writes
//! its one event, and a late settler only reads the outcome.
//!
//! **One live payment per order.** The first transaction of a charge takes a
//! transaction-scoped advisory lock on its order before it reads anything, so concurrent
//! charges of one order record one after the other: the first records `pending`, the
//! others find it and wait for its outcome (until that call's deadline has passed; then
//! they answer [`PaymentError::AlreadyPending`]), or find a captured payment and return it
//! without asking the gateway. The lock ends with that transaction, before the gateway is
//! asked. The reconciler (`reconciler.rs`) settles what no answer settled.
//! The unique partial index `payments_one_live_per_order_idx` is the database's own guard.
//!
//! One file per command: `charge.rs`, `refund.rs`; and `reconciler.rs`, which settles what
//! no answer settled.

mod charge;
mod reconciler;
mod refund;

pub use reconciler::ReconcilerSettings;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::db::{self, DbContext, Pool};
use kernel::{Money, OrderId, PaymentId};
use payments_api::{Payment, PaymentApi, PaymentError, PaymentStatus};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::domain::StoredStatus;
use crate::gateway::PaymentGateway;
use crate::schema::payments;

/// Stops a command at a named point, as a crash there would (tests only): an `Err` ends
/// the command with it. Points: `after_gateway_charge` (the gateway captured, nothing
/// settled yet).
pub type FaultHook = Arc<dyn Fn(&'static str) -> anyhow::Result<()> + Send + Sync>;

/// How the service treats its gateway.
#[derive(Clone)]
pub struct PaymentSettings {
    /// The deadline of each gateway call (`PAYMENT_GATEWAY_TIMEOUT`).
    pub gateway_timeout: Duration,
    pub faults: Option<FaultHook>,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        PaymentSettings {
            gateway_timeout: Duration::from_secs(10),
            faults: None,
        }
    }
}

impl PaymentSettings {
    /// When the reconciler first asks the gateway about a payment recorded pending (or a
    /// refund asked for) at `now`: once its own call has certainly given up, with a margin.
    fn first_check(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.gateway_timeout * 2).unwrap_or(chrono::Duration::MAX)
    }
}

/// [`PaymentApi`] over Postgres and a [`PaymentGateway`].
#[derive(Clone)]
pub struct PaymentService {
    pool: Pool,
    gateway: Arc<dyn PaymentGateway>,
    settings: PaymentSettings,
}

impl PaymentService {
    pub fn new(pool: Pool, gateway: Arc<dyn PaymentGateway>, settings: PaymentSettings) -> Self {
        PaymentService {
            pool,
            gateway,
            settings,
        }
    }

    fn fault(&self, point: &'static str) -> Result<(), PaymentError> {
        match &self.settings.faults {
            Some(hook) => hook(point).map_err(PaymentError::Unexpected),
            None => Ok(()),
        }
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
    refund_requested_at: Option<DateTime<Utc>>,
    check_after: Option<DateTime<Utc>>,
    checks: i32,
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

/// The order's pending, captured or refunded payment, if any; with `lock`, locked
/// `FOR UPDATE` for the rest of the transaction.
async fn live(
    conn: &mut AsyncPgConnection,
    order_id: OrderId,
    lock: bool,
) -> Result<Option<PaymentRow>, PaymentError> {
    let query = payments::table
        .filter(payments::order_id.eq(order_id.as_uuid()))
        .filter(payments::status.ne(StoredStatus(PaymentStatus::Declined)))
        .filter(payments::status.ne(StoredStatus(PaymentStatus::Failed)))
        .select(PaymentRow::as_select());
    let row = if lock {
        query.for_update().first(conn).await
    } else {
        query.first(conn).await
    };
    Ok(row.optional().db_context("loading the order's payment")?)
}

/// The payment `id`, which must exist.
async fn reload(conn: &mut AsyncPgConnection, id: PaymentId) -> Result<Payment, PaymentError> {
    payments::table
        .find(id.as_uuid())
        .select(PaymentRow::as_select())
        .first(conn)
        .await
        .optional()
        .db_context("loading payment")?
        .ok_or(PaymentError::NotFound(id))?
        .try_into()
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
        self.charge_order(order_id, amount, token).await
    }

    #[tracing::instrument(name = "payments.refund", skip_all)]
    async fn refund(&self, order_id: OrderId) -> Result<Option<Payment>, PaymentError> {
        self.refund_order(order_id).await
    }

    #[tracing::instrument(name = "payments.get", skip_all)]
    async fn get(&self, id: PaymentId) -> Result<Payment, PaymentError> {
        let mut conn = db::connect(&self.pool).await?;
        reload(&mut conn, id).await
    }

    #[tracing::instrument(name = "payments.for_order", skip_all)]
    async fn for_order(&self, order_id: OrderId) -> Result<Vec<Payment>, PaymentError> {
        let mut conn = db::connect(&self.pool).await?;
        // The newest ones: a pending, captured or refunded payment is always among them
        // (at most one, and no charge follows it but after a refund).
        let mut rows: Vec<PaymentRow> = payments::table
            .filter(payments::order_id.eq(order_id.as_uuid()))
            .select(PaymentRow::as_select())
            .order((payments::created_at.desc(), payments::id.desc()))
            .limit(payments_api::MAX_LISTED)
            .load(&mut conn)
            .await
            .db_context("listing the order's payments")?;
        rows.reverse();
        rows.into_iter().map(Payment::try_from).collect()
    }
}
