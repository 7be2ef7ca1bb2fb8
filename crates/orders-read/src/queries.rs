//! The read side: [`OrderQueries`] over the `orders_read` schema (in `READ_DATABASE_URL`'s
//! database), which only the projection writes.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::db::{self, DbContext, Pool};
use kernel::{Money, OrderId, PageRequest};
use orders_api::{
    OrderError, OrderFilter, OrderItemView, OrderPage, OrderQueries, OrderView, Read,
};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::schema::{generations, order_items, orders};
use crate::states::{GenerationState, StoredStatus};

/// How long `min_version` waits for the read model at most.
pub const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(2);

/// The read model: [`OrderQueries`] over the `orders_read` schema.
#[derive(Clone)]
pub struct OrderReadModel {
    pool: Pool,
}

impl OrderReadModel {
    pub fn new(pool: Pool) -> Self {
        OrderReadModel { pool }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = orders)]
struct ViewRow {
    id: Uuid,
    user_id: Uuid,
    user_name: Option<String>,
    user_email: Option<String>,
    item_count: i32,
    total: Decimal,
    status: StoredStatus,
    cancel_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

fn money(value: Decimal) -> Result<Money, OrderError> {
    Money::from_decimal(value)
        .map_err(|e| OrderError::Unexpected(anyhow::anyhow!("stored amount: {e}")))
}

/// Orders of the live generation, named in the query itself (not looked up first): one
/// round trip less per query. A scalar subquery (an init plan, evaluated once), so the
/// indexes that lead with the generation still serve the order of a list.
macro_rules! live_orders {
    () => {
        orders::table.filter(
            orders::generation.nullable().eq(generations::table
                .filter(generations::state.eq(GenerationState::Live))
                .select(generations::id)
                .single_value()),
        )
    };
}

/// Loads the given rows' items and assembles the views, in the rows' order.
async fn views(
    conn: &mut AsyncPgConnection,
    generation: i32,
    rows: Vec<ViewRow>,
) -> Result<Vec<OrderView>, OrderError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let items: Vec<(Uuid, Uuid, String, i64, Decimal)> = order_items::table
        .filter(order_items::generation.eq(generation))
        .filter(order_items::order_id.eq_any(&ids))
        .order((order_items::order_id, order_items::line))
        .select((
            order_items::order_id,
            order_items::product_id,
            order_items::product_name,
            order_items::quantity,
            order_items::price,
        ))
        .load(conn)
        .await
        .db_context("loading order items")?;
    rows.into_iter()
        .map(|row| {
            let StoredStatus(status) = row.status;
            let items = items
                .iter()
                .filter(|(order_id, ..)| *order_id == row.id)
                .map(|(_, product_id, name, quantity, price)| {
                    let price = money(*price)?;
                    let subtotal = price
                        .checked_mul(u32::try_from(*quantity).unwrap_or(u32::MAX))
                        .ok_or_else(|| anyhow::anyhow!("subtotal overflows"))?;
                    Ok(OrderItemView {
                        product_id: (*product_id).into(),
                        product_name: name.clone(),
                        quantity: *quantity,
                        price,
                        subtotal,
                    })
                })
                .collect::<Result<Vec<_>, OrderError>>()?;
            Ok(OrderView {
                id: row.id.into(),
                user_id: row.user_id.into(),
                user_name: row.user_name,
                user_email: row.user_email,
                items,
                item_count: i64::from(row.item_count),
                total: money(row.total)?,
                status,
                status_display: status.display().to_owned(),
                cancel_reason: row.cancel_reason,
                created_at: row.created_at,
                updated_at: row.updated_at,
                version: row.version,
            })
        })
        .collect()
}

impl OrderReadModel {
    async fn find(&self, id: OrderId) -> Result<Option<OrderView>, OrderError> {
        let mut conn = db::connect(&self.pool).await?;
        let row: Option<(i32, ViewRow)> = live_orders!()
            .filter(orders::id.eq(id.as_uuid()))
            .select((orders::generation, ViewRow::as_select()))
            .first(&mut conn)
            .await
            .optional()
            .db_context("loading order view")?;
        Ok(match row {
            Some((generation, row)) => views(&mut conn, generation, vec![row]).await?.pop(),
            None => None,
        })
    }
}

#[async_trait]
impl OrderQueries for OrderReadModel {
    async fn get(&self, id: OrderId, min_version: Option<i64>) -> Result<Read, OrderError> {
        let deadline = tokio::time::Instant::now() + READ_YOUR_WRITES_WAIT;
        loop {
            let found = self.find(id).await?;
            let fresh = match (&found, min_version) {
                (Some(view), Some(min)) => view.version >= min,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if fresh {
                return Ok(Read::Fresh(found.expect("fresh means found")));
            }
            if min_version.is_none() || tokio::time::Instant::now() >= deadline {
                return found.map(Read::Stale).ok_or(OrderError::NotFound(id));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn list(&self, filter: OrderFilter, page: PageRequest) -> Result<OrderPage, OrderError> {
        let mut conn = db::connect(&self.pool).await?;
        // The live generation, or the one the page was read from (so that the count and the
        // items agree with the page even if a rebuild takes over meanwhile).
        let filtered = |generation: Option<i32>| {
            let mut query = match generation {
                Some(generation) => orders::table
                    .filter(orders::generation.eq(generation))
                    .into_boxed(),
                None => live_orders!().into_boxed(),
            };
            if let Some(user_id) = filter.user_id {
                query = query.filter(orders::user_id.eq(user_id.as_uuid()));
            }
            if let Some(status) = filter.status {
                query = query.filter(orders::status.eq(StoredStatus(status)));
            }
            query
        };
        let rows: Vec<(i32, ViewRow)> = filtered(None)
            .select((orders::generation, ViewRow::as_select()))
            .order((orders::created_at.desc(), orders::id.desc()))
            .offset(page.offset())
            .limit(page.limit())
            .load(&mut conn)
            .await
            .db_context("listing orders")?;
        let page_generation = rows.as_slice().first().map(|(generation, _)| *generation);
        let total: i64 = filtered(page_generation)
            .count()
            .get_result(&mut conn)
            .await
            .db_context("counting orders")?;
        let total = u64::try_from(total).unwrap_or_default();
        let rows = rows.into_iter().map(|(_, row)| row).collect();
        Ok(OrderPage {
            orders: views(&mut conn, page_generation.unwrap_or_default(), rows).await?,
            total,
            page: page.page(),
            page_size: page.page_size(),
            total_pages: page.total_pages(total),
        })
    }
}
