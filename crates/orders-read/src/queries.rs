//! The read side: [`OrderQueries`] over the `orders_read` schema (in `READ_DATABASE_URL`'s
//! database), which only the projection writes.
//!
//! Names are joined, not copied: an order's user name and email and its items' product
//! names are the latest ones the projection saw (`orders_read.users`, `orders_read.products`,
//! one row each, looked up by primary key), else the ones the order was placed with. So a
//! rename is one row for the projection, whatever the number of orders it reaches.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::expression::functions::declare_sql_function;
use diesel::prelude::*;
use diesel::sql_types::{Integer, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::db::{self, DbContext, Pool};
use kernel::{Money, OrderId, PageRequest};
use orders_api::{
    OrderError, OrderFilter, OrderItemView, OrderPage, OrderQueries, OrderView, Read,
};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::schema::{generations, order_items, orders, products, users};
use crate::states::{GenerationState, StoredStatus};
use crate::waits::Waits;

/// How long `min_version` waits for the read model at most.
pub const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(2);

/// The read model: [`OrderQueries`] over the `orders_read` schema.
#[derive(Clone)]
pub struct OrderReadModel {
    pool: Pool,
    waits: Waits,
}

impl OrderReadModel {
    /// A read model whose `min_version` waits poll (see [`crate::OrderReadSide::listen`]
    /// for waits woken by the projection).
    pub fn new(pool: Pool) -> Self {
        OrderReadModel {
            pool,
            waits: Waits::new(None, MAX_WAITERS),
        }
    }

    pub(crate) fn with_waits(mut self, waits: Waits) -> Self {
        self.waits = waits;
        self
    }
}

/// Raw: a list's total, summed from the counts the read model's triggers keep
/// (`orders_read.order_counts`, see its migration): at most five rows of one generation,
/// however many orders match. `$1` the generation (the live one if null), `$2` the user (every
/// user's if null), `$3` the status (all five if null).
pub const LIST_TOTAL: &str = "SELECT coalesce(sum(n), 0)::bigint AS n FROM orders_read.order_counts \
     WHERE generation = coalesce($1, (SELECT id FROM orders_read.generations WHERE state = 'live')) \
       AND user_id = coalesce($2, '00000000-0000-0000-0000-000000000000'::uuid) \
       AND ($3::text IS NULL OR status = $3)";

#[derive(QueryableByName)]
struct Total {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// How many `min_version` waits one process holds at once by default.
pub const MAX_WAITERS: usize = 1000;

#[declare_sql_function]
extern "SQL" {
    /// The latest name seen in events, else the one placed with (users' columns).
    #[sql_name = "coalesce"]
    fn latest_or_placed(latest: Nullable<Text>, placed: Nullable<Text>) -> Nullable<Text>;
    /// The same for items, whose names as placed are never null.
    #[sql_name = "coalesce"]
    fn latest_or(latest: Nullable<Text>, placed: Text) -> Text;
}

/// An order row with its generation and its user's latest names, in the order of
/// [`view_columns!`] (or by name, from [`ORDER_VIEW`]).
#[derive(Queryable, QueryableByName)]
struct ViewRow {
    #[diesel(sql_type = Integer)]
    generation: i32,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = Nullable<Text>)]
    user_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    user_email: Option<String>,
    #[diesel(sql_type = Integer)]
    item_count: i32,
    #[diesel(sql_type = diesel::sql_types::Numeric)]
    total: Decimal,
    #[diesel(sql_type = Text)]
    status: StoredStatus,
    #[diesel(sql_type = Nullable<Text>)]
    cancel_reason: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    version: i64,
}

fn money(value: Decimal) -> Result<Money, OrderError> {
    Money::from_decimal(value)
        .map_err(|e| OrderError::Unexpected(anyhow::anyhow!("stored amount: {e}")))
}

/// The live generation's id, named in the query itself (not looked up first): one round
/// trip less per query. A scalar subquery (an init plan, evaluated once), so the indexes
/// that lead with the generation still serve the order of a list.
macro_rules! live_generation {
    () => {
        generations::table
            .filter(generations::state.eq(GenerationState::Live))
            .select(generations::id)
            .single_value()
    };
}

/// Orders with their user's latest names (a primary-key lookup per order).
macro_rules! named_orders {
    () => {
        orders::table.left_join(
            users::table.on(users::generation
                .eq(orders::generation)
                .and(users::id.eq(orders::user_id))),
        )
    };
}

/// The columns of a [`ViewRow`] from [`named_orders!`].
macro_rules! view_columns {
    () => {
        (
            orders::generation,
            orders::id,
            orders::user_id,
            latest_or_placed(users::name.nullable(), orders::user_name),
            latest_or_placed(users::email.nullable(), orders::user_email),
            orders::item_count,
            orders::total,
            orders::status,
            orders::cancel_reason,
            orders::created_at,
            orders::updated_at,
            orders::version,
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
    let items: Vec<ItemRow> = order_items::table
        .left_join(
            products::table.on(products::generation
                .eq(order_items::generation)
                .and(products::id.eq(order_items::product_id))),
        )
        .filter(order_items::generation.eq(generation))
        .filter(order_items::order_id.eq_any(&ids))
        .order((order_items::order_id, order_items::line))
        .select((
            order_items::order_id,
            order_items::product_id,
            latest_or(products::name.nullable(), order_items::product_name),
            order_items::quantity,
            order_items::price,
        ))
        .load(conn)
        .await
        .db_context("loading order items")?;
    assemble(rows, &items)
}

/// An item of an order: its order, product, latest name, quantity and price.
type ItemRow = (Uuid, Uuid, String, i64, Decimal);

/// The views of `rows`, in their order, each with its items of `items`.
fn assemble(rows: Vec<ViewRow>, items: &[ItemRow]) -> Result<Vec<OrderView>, OrderError> {
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

/// Raw: one order of the live generation with its user's latest names and its items (the
/// latest product names, in line order, as a JSON array of `[product_id, name, quantity,
/// price]`): the whole view in one statement, one round trip.
const ORDER_VIEW: &str = "SELECT o.generation, o.id, o.user_id, \
       coalesce(u.name, o.user_name) AS user_name, coalesce(u.email, o.user_email) AS user_email, \
       o.item_count, o.total, o.status, o.cancel_reason, o.created_at, o.updated_at, o.version, \
       (SELECT coalesce(json_agg(json_build_array(i.product_id, coalesce(p.name, i.product_name), \
            i.quantity, i.price::text) ORDER BY i.line), '[]') \
          FROM orders_read.order_items i \
          LEFT JOIN orders_read.products p ON p.generation = i.generation AND p.id = i.product_id \
          WHERE i.generation = o.generation AND i.order_id = o.id)::text AS items \
     FROM orders_read.orders o \
     LEFT JOIN orders_read.users u ON u.generation = o.generation AND u.id = o.user_id \
     WHERE o.generation = (SELECT id FROM orders_read.generations WHERE state = 'live') \
       AND o.id = $1";

/// A row of [`ORDER_VIEW`].
#[derive(QueryableByName)]
struct ViewWithItems {
    #[diesel(embed)]
    view: ViewRow,
    #[diesel(sql_type = Text)]
    items: String,
}

impl OrderReadModel {
    async fn find(&self, id: OrderId) -> Result<Option<OrderView>, OrderError> {
        let mut conn = db::connect(&self.pool).await?;
        let found: Option<ViewWithItems> =
            db::prepared(diesel::sql_query(ORDER_VIEW).bind::<SqlUuid, _>(id.as_uuid()))
                .get_result(&mut conn)
                .await
                .optional()
                .db_context("loading order view")?;
        let Some(found) = found else {
            return Ok(None);
        };
        let items: Vec<ItemRow> =
            serde_json::from_str::<Vec<(Uuid, String, i64, String)>>(&found.items)
                .map_err(|e| OrderError::Unexpected(anyhow::anyhow!("stored items: {e}")))?
                .into_iter()
                .map(|(product_id, name, quantity, price)| {
                    let price = Decimal::from_str_exact(&price).map_err(|e| {
                        OrderError::Unexpected(anyhow::anyhow!("stored price: {e}"))
                    })?;
                    Ok((found.view.id, product_id, name, quantity, price))
                })
                .collect::<Result<_, OrderError>>()?;
        Ok(assemble(vec![found.view], &items)?.pop())
    }
}

#[async_trait]
impl OrderQueries for OrderReadModel {
    async fn get(&self, id: OrderId, min_version: Option<i64>) -> Result<Read, OrderError> {
        let fresh = |found: &Option<OrderView>| match (found, min_version) {
            (Some(view), Some(min)) => view.version >= min,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let answer = |found: Option<OrderView>, fresh: bool| match found {
            Some(view) if fresh => Ok(Read::Fresh(view)),
            Some(view) => Ok(Read::Stale(view)),
            None => Err(OrderError::NotFound(id)),
        };
        // A place among the waiters, if the answer may need waiting for (and one is free:
        // else the answer is what the read model holds now).
        let deadline = tokio::time::Instant::now() + READ_YOUR_WRITES_WAIT;
        let mut waiter = min_version.and_then(|_| self.waits.enter(deadline));
        loop {
            let found = self.find(id).await?;
            let now_fresh = fresh(&found);
            let Some(waiting) = waiter.as_mut().filter(|_| !now_fresh) else {
                return answer(found, now_fresh);
            };
            if waiting.next().await {
                let found = self.find(id).await?;
                let now_fresh = fresh(&found);
                return answer(found, now_fresh);
            }
        }
    }

    async fn list(&self, filter: OrderFilter, page: PageRequest) -> Result<OrderPage, OrderError> {
        let mut conn = db::connect(&self.pool).await?;
        // The filter, on the orders alone or joined to their names.
        macro_rules! filtered {
            ($query:expr) => {{
                let mut query = $query;
                if let Some(user_id) = filter.user_id {
                    query = query.filter(orders::user_id.eq(user_id.as_uuid()));
                }
                if let Some(status) = filter.status {
                    query = query.filter(orders::status.eq(StoredStatus(status)));
                }
                query
            }};
        }
        let rows: Vec<ViewRow> = filtered!(
            named_orders!()
                .filter(orders::generation.nullable().eq(live_generation!()))
                .into_boxed()
        )
        .select(view_columns!())
        .order((orders::created_at.desc(), orders::id.desc()))
        .offset(page.offset())
        .limit(page.limit())
        .load(&mut conn)
        .await
        .db_context("listing orders")?;
        // The live generation, or the one the page was read from (so that the total and the
        // items agree with the page even if a rebuild takes over meanwhile).
        let page_generation = rows.as_slice().first().map(|row| row.generation);
        let total: Total = kernel::db::prepared(
            diesel::sql_query(LIST_TOTAL)
                .bind::<Nullable<Integer>, _>(page_generation)
                .bind::<Nullable<SqlUuid>, _>(filter.user_id.map(|user| user.as_uuid()))
                .bind::<Nullable<Text>, _>(filter.status.map(StoredStatus)),
        )
        .get_result(&mut conn)
        .await
        .db_context("totalling orders")?;
        let total = total.n;
        let total = u64::try_from(total).unwrap_or_default();
        Ok(OrderPage {
            orders: views(&mut conn, page_generation.unwrap_or_default(), rows).await?,
            total,
            page: page.page(),
            page_size: page.page_size(),
            total_pages: page.total_pages(total),
        })
    }
}
