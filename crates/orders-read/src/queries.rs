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
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use kernel::db::{self, DbContext, Pool};
use kernel::{Money, OrderId, PageRequest};
use orders_api::{
    OrderError, OrderFilter, OrderItemView, OrderPage, OrderQueries, OrderStatus, OrderView, Read,
};
use rust_decimal::Decimal;
use serde::Deserialize;
use uuid::Uuid;

use crate::states::StoredStatus;
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

/// One order of the read model (`o`, joined to its user's latest names as `u`) as a JSON
/// object, its items (the latest product names, in line order) an array of
/// `[product_id, name, quantity, price]`: the shape of [`StoredView`].
macro_rules! order_json {
    () => {
        "json_build_object('id', o.id, 'user_id', o.user_id, \
           'user_name', coalesce(u.name, o.user_name), 'user_email', coalesce(u.email, o.user_email), \
           'item_count', o.item_count, 'total', o.total::text, 'status', o.status, \
           'cancel_reason', o.cancel_reason, 'created_at', o.created_at, \
           'updated_at', o.updated_at, 'version', o.version, \
           'items', (SELECT coalesce(json_agg(json_build_array(i.product_id, \
                coalesce(p.name, i.product_name), i.quantity, i.price::text) ORDER BY i.line), '[]') \
              FROM orders_read.order_items i \
              LEFT JOIN orders_read.products p ON p.generation = i.generation AND p.id = i.product_id \
              WHERE i.generation = o.generation AND i.order_id = o.id))"
    };
}

/// The live generation's id, named in the statement itself (not looked up first): a
/// scalar subquery (an init plan, evaluated once), so the indexes that lead with the
/// generation still serve a list's order.
macro_rules! live {
    () => {
        "(SELECT id FROM orders_read.generations WHERE state = 'live')"
    };
}

/// A list's total of generation `$generation`, summed from the counts the read model's
/// triggers keep (`orders_read.order_counts`, see its migration): at most five rows,
/// however many orders match. `$1` the user (every user's if null), `$2` the status (all
/// five if null).
macro_rules! list_total {
    ($generation:expr) => {
        concat!(
            "SELECT coalesce(sum(n), 0)::bigint AS n FROM orders_read.order_counts \
             WHERE generation = ",
            $generation,
            " AND user_id = coalesce($1, '00000000-0000-0000-0000-000000000000'::uuid) \
               AND ($2::text IS NULL OR status = $2)"
        )
    };
}

/// Raw: the total of a list of the live generation (as [`list_total!`]); the statement the
/// list's own embeds, kept apart so a test can read its plan.
pub const LIST_TOTAL: &str = list_total!(live!());

/// Raw: one page of orders, newest first, with its total, in one statement (so one snapshot:
/// the page, its items and its total are of one generation even while a rebuild takes
/// over). `$filter` narrows the page (`$1` the user, `$2` the status); `$3` the offset,
/// `$4` the limit. One constant per filter, so that each keeps a plan that uses its index.
macro_rules! list_page {
    ($filter:literal) => {
        concat!(
            "WITH live AS ",
            live!(),
            ", page AS (SELECT * FROM orders_read.orders \
               WHERE generation = (SELECT id FROM live)",
            $filter,
            " ORDER BY created_at DESC, id DESC OFFSET $3 LIMIT $4) \
             SELECT (",
            list_total!("(SELECT id FROM live)"),
            ") AS total, \
               (SELECT coalesce(json_agg(",
            order_json!(),
            " ORDER BY o.created_at DESC, o.id DESC), '[]') \
                FROM page o \
                LEFT JOIN orders_read.users u ON u.generation = o.generation AND u.id = o.user_id \
               )::text AS orders"
        )
    };
}

const LIST: &str = list_page!("");
const LIST_BY_USER: &str = list_page!(" AND user_id = $1");
const LIST_BY_STATUS: &str = list_page!(" AND status = $2");
const LIST_BY_USER_AND_STATUS: &str = list_page!(" AND user_id = $1 AND status = $2");

/// A row of a `list_page!` statement.
#[derive(QueryableByName)]
struct Listed {
    #[diesel(sql_type = BigInt)]
    total: i64,
    #[diesel(sql_type = Text)]
    orders: String,
}

/// Raw: one order of the live generation as [`order_json!`]: the whole view in one
/// statement, one round trip.
const ORDER_VIEW: &str = concat!(
    "SELECT ",
    order_json!(),
    "::text AS view FROM orders_read.orders o \
     LEFT JOIN orders_read.users u ON u.generation = o.generation AND u.id = o.user_id \
     WHERE o.generation = ",
    live!(),
    " AND o.id = $1"
);

/// A row of [`ORDER_VIEW`].
#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = Text)]
    view: String,
}

/// How many `min_version` waits one process holds at once by default.
pub const MAX_WAITERS: usize = 1000;

/// An order as [`order_json!`] writes it.
#[derive(Deserialize)]
struct StoredView {
    id: Uuid,
    user_id: Uuid,
    user_name: Option<String>,
    user_email: Option<String>,
    item_count: i32,
    total: String,
    status: String,
    cancel_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
    /// `[product_id, latest name, quantity, price]`, in line order.
    items: Vec<(Uuid, String, i64, String)>,
}

fn stored(what: &str, error: impl std::fmt::Display) -> OrderError {
    OrderError::Unexpected(anyhow::anyhow!("stored {what}: {error}"))
}

fn money(text: &str) -> Result<Money, OrderError> {
    let value = Decimal::from_str_exact(text).map_err(|e| stored("amount", e))?;
    Money::from_decimal(value).map_err(|e| stored("amount", e))
}

impl StoredView {
    fn view(self) -> Result<OrderView, OrderError> {
        let status: OrderStatus = self.status.parse().map_err(|e| stored("status", e))?;
        let items = self
            .items
            .into_iter()
            .map(|(product_id, product_name, quantity, price)| {
                let price = money(&price)?;
                let subtotal = price
                    .checked_mul(u32::try_from(quantity).unwrap_or(u32::MAX))
                    .ok_or_else(|| anyhow::anyhow!("subtotal overflows"))?;
                Ok(OrderItemView {
                    product_id: product_id.into(),
                    product_name,
                    quantity,
                    price,
                    subtotal,
                })
            })
            .collect::<Result<Vec<_>, OrderError>>()?;
        Ok(OrderView {
            id: self.id.into(),
            user_id: self.user_id.into(),
            user_name: self.user_name,
            user_email: self.user_email,
            items,
            item_count: i64::from(self.item_count),
            total: money(&self.total)?,
            status,
            status_display: status.display().to_owned(),
            cancel_reason: self.cancel_reason,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        })
    }
}

impl OrderReadModel {
    async fn find(&self, id: OrderId) -> Result<Option<OrderView>, OrderError> {
        let mut conn = db::connect(&self.pool).await?;
        let found: Option<Found> =
            db::prepared(diesel::sql_query(ORDER_VIEW).bind::<SqlUuid, _>(id.as_uuid()))
                .get_result(&mut conn)
                .await
                .optional()
                .db_context("loading order view")?;
        found
            .map(|found| {
                serde_json::from_str::<StoredView>(&found.view)
                    .map_err(|e| stored("order", e))?
                    .view()
            })
            .transpose()
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
        let statement = match (filter.user_id.is_some(), filter.status.is_some()) {
            (false, false) => LIST,
            (true, false) => LIST_BY_USER,
            (false, true) => LIST_BY_STATUS,
            (true, true) => LIST_BY_USER_AND_STATUS,
        };
        let mut conn = db::connect(&self.pool).await?;
        let listed: Listed = db::prepared(
            diesel::sql_query(statement)
                .bind::<Nullable<SqlUuid>, _>(filter.user_id.map(|user| user.as_uuid()))
                .bind::<Nullable<Text>, _>(filter.status.map(StoredStatus))
                .bind::<BigInt, _>(page.offset())
                .bind::<BigInt, _>(page.limit()),
        )
        .get_result(&mut conn)
        .await
        .db_context("listing orders")?;
        let orders = serde_json::from_str::<Vec<StoredView>>(&listed.orders)
            .map_err(|e| stored("orders", e))?
            .into_iter()
            .map(StoredView::view)
            .collect::<Result<_, _>>()?;
        let total = u64::try_from(listed.total).unwrap_or_default();
        Ok(OrderPage {
            orders,
            total,
            page: page.page(),
            page_size: page.page_size(),
            total_pages: page.total_pages(total),
        })
    }
}
