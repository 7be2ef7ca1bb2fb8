//! The aggregate's persistence: loading an order (with or without its row lock) and saving
//! it with a version check and its event, in the caller's transaction; and the fence a
//! confirm puts on an order while it charges (`domain::Fence`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::db::DbContext;
use kernel::{Money, NewEvent, OrderId};
use orders_api::{Accepted, ExpectedVersion, OrderError};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::SCHEMA;
use crate::domain::{Fence, Order};
use crate::schema::orders;
use crate::state::State;

#[derive(Queryable, Selectable)]
#[diesel(table_name = orders)]
struct OrderRow {
    id: Uuid,
    user_id: Uuid,
    status: State,
    total: Decimal,
    payment_id: Option<Uuid>,
    cancel_reason: Option<String>,
    version: i64,
    confirm_attempt: Option<Uuid>,
    confirm_until: Option<DateTime<Utc>>,
}

impl OrderRow {
    fn into_order(self) -> Result<Order, OrderError> {
        let State(status) = self.status;
        Ok(Order {
            id: self.id.into(),
            user_id: self.user_id.into(),
            status,
            total: Money::from_decimal(self.total)
                .map_err(|e| anyhow::anyhow!("stored total: {e}"))?,
            payment_id: self.payment_id.map(Into::into),
            cancel_reason: self.cancel_reason,
            version: self.version,
            fence: self
                .confirm_attempt
                .zip(self.confirm_until)
                .map(|(attempt, until)| Fence { attempt, until }),
        })
    }
}

fn visible(id: OrderId, row: QueryResult<OrderRow>) -> Result<Order, OrderError> {
    row.optional()
        .db_context("loading order")?
        .ok_or(OrderError::NotFound(id))?
        .into_order()
}

/// Loads an order, without locking it.
pub(crate) async fn load(conn: &mut AsyncPgConnection, id: OrderId) -> Result<Order, OrderError> {
    let row = orders::table
        .find(id.as_uuid())
        .select(OrderRow::as_select())
        .first(conn)
        .await;
    visible(id, row)
}

/// Loads an order and holds its row lock until the transaction ends.
pub(crate) async fn load_for_update(
    conn: &mut AsyncPgConnection,
    id: OrderId,
) -> Result<Order, OrderError> {
    let row = orders::table
        .find(id.as_uuid())
        .select(OrderRow::as_select())
        .for_update()
        .first(conn)
        .await;
    visible(id, row)
}

/// Saves `order` (which was at `previous_version`) and appends its event.
pub(crate) async fn save(
    conn: &mut AsyncPgConnection,
    order: &Order,
    previous_version: i64,
    event: NewEvent,
) -> Result<(), OrderError> {
    let updated = diesel::update(
        orders::table
            .find(order.id.as_uuid())
            .filter(orders::version.eq(previous_version)),
    )
    .set((
        orders::status.eq(State(order.status)),
        orders::version.eq(order.version),
        orders::payment_id.eq(order.payment_id.map(|p| p.as_uuid())),
        orders::cancel_reason.eq(&order.cancel_reason),
        orders::updated_at.eq(Utc::now()),
        // A status change ends any confirm's fence (see `domain::Fence`).
        orders::confirm_attempt.eq(None::<Uuid>),
        orders::confirm_until.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)
    .await
    .db_context("saving order")?;
    if updated != 1 {
        return Err(OrderError::Conflict(order.id));
    }
    eventlog::append(conn, SCHEMA.name, &[event]).await?;
    Ok(())
}

/// Puts `fence` on a locked order (no new version, no event: nothing a reader sees changes).
pub(crate) async fn put_fence(
    conn: &mut AsyncPgConnection,
    id: OrderId,
    fence: Fence,
) -> Result<(), OrderError> {
    diesel::update(orders::table.find(id.as_uuid()))
        .set((
            orders::confirm_attempt.eq(fence.attempt),
            orders::confirm_until.eq(fence.until),
        ))
        .execute(conn)
        .await
        .db_context("fencing order")?;
    Ok(())
}

/// Lifts the fence of confirm `attempt`, if the order still has it.
pub(crate) async fn lift_fence(
    conn: &mut AsyncPgConnection,
    id: OrderId,
    attempt: Uuid,
) -> Result<(), OrderError> {
    diesel::update(
        orders::table
            .find(id.as_uuid())
            .filter(orders::confirm_attempt.eq(attempt)),
    )
    .set((
        orders::confirm_attempt.eq(None::<Uuid>),
        orders::confirm_until.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)
    .await
    .db_context("lifting an order's fence")?;
    Ok(())
}

/// What a command answers about the order it changed.
pub(crate) fn accepted(order: &Order) -> Accepted {
    Accepted {
        order_id: order.id,
        status: order.status,
        version: order.version,
    }
}

/// `If-Match`: the order must be at the expected version, if one is given.
pub(crate) fn check_version(order: &Order, expected: ExpectedVersion) -> Result<(), OrderError> {
    match expected {
        Some(expected) if expected != order.version => Err(OrderError::VersionMismatch {
            order_id: order.id,
            expected,
            actual: order.version,
        }),
        _ => Ok(()),
    }
}

/// [`payments_api::OrderOwners`] over `orders.orders`: an order in any state has an owner
/// (a placement still in flight too: its payment cannot exist yet anyway).
pub(crate) struct Owners(pub(crate) kernel::db::Pool);

#[async_trait::async_trait]
impl payments_api::OrderOwners for Owners {
    async fn owner(&self, order_id: OrderId) -> anyhow::Result<Option<kernel::UserId>> {
        let mut conn = kernel::db::connect(&self.0).await?;
        let owner: Option<Uuid> = orders::table
            .find(order_id.as_uuid())
            .select(orders::user_id)
            .first(&mut *conn)
            .await
            .optional()
            .db_context("loading the order's owner")?;
        Ok(owner.map(Into::into))
    }
}
