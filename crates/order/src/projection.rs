//! The `order_read` projection: builds the denormalized read model from order, user and
//! product events only (it never reads another module's tables).
//!
//! Every write is guarded by the aggregate version it carries, so delivering an event a
//! second time changes nothing. User and product names are kept in `order_read.users` and
//! `order_read.products` and copied onto orders, so a rename reaches every order whichever
//! event arrives first. Every row belongs to a generation (see `rebuild.rs`): the live
//! projection writes the live one, a rebuild writes the one it builds.

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::Envelope;
use kernel::db::events::Subscriber;
use order_api::events as order_events;
use product_api::events as product_events;
use user_api::events as user_events;
use uuid::Uuid;

use crate::schema::read::{generations, order_items, orders, products};

/// The live projection's name (and checkpoint key).
pub(crate) const NAME: &str = "order_read";
/// The name a rebuild runs under while it builds a generation.
pub(crate) const REBUILD_NAME: &str = "order_read_rebuild";

pub(crate) struct OrderProjection {
    /// `None`: whichever generation is live when an event is applied.
    generation: Option<i32>,
}

impl OrderProjection {
    pub(crate) fn live() -> Self {
        OrderProjection { generation: None }
    }

    pub(crate) fn building(generation: i32) -> Self {
        OrderProjection {
            generation: Some(generation),
        }
    }
}

/// The generation queries and the live projection use.
pub(crate) async fn live_generation(conn: &mut AsyncPgConnection) -> QueryResult<i32> {
    generations::table
        .filter(generations::state.eq("live"))
        .select(generations::id)
        .first(conn)
        .await
}

#[async_trait]
impl Subscriber for OrderProjection {
    fn name(&self) -> &'static str {
        if self.generation.is_some() {
            REBUILD_NAME
        } else {
            NAME
        }
    }

    async fn apply(
        &self,
        conn: &mut AsyncPgConnection,
        _source: &str,
        event: &Envelope,
    ) -> anyhow::Result<()> {
        let g = match self.generation {
            Some(g) => g,
            None => live_generation(conn).await?,
        };
        let (id, version) = (event.aggregate_id, event.aggregate_version);
        match event.event_type.as_str() {
            user_events::USER_REGISTERED | user_events::USER_UPDATED => {
                let user: user_events::UserUpdated = event.payload()?;
                user_seen(conn, g, id, &user.name, &user.email, version).await
            }
            product_events::PRODUCT_CREATED | product_events::PRODUCT_UPDATED => {
                let product: product_events::ProductUpdated = event.payload()?;
                product_seen(conn, g, id, &product.name, version).await
            }
            order_events::ORDER_CREATED => order_created(conn, g, event).await,
            order_events::ORDER_CONFIRMED => status(conn, g, event, "confirmed", None).await,
            order_events::ORDER_SHIPPED => status(conn, g, event, "shipped", None).await,
            order_events::ORDER_DELIVERED => status(conn, g, event, "delivered", None).await,
            order_events::ORDER_CANCELLED => {
                let cancelled: order_events::OrderCancelled = event.payload()?;
                status(conn, g, event, "cancelled", Some(cancelled.reason)).await
            }
            _ => Ok(()),
        }
    }
}

async fn user_seen(
    conn: &mut AsyncPgConnection,
    g: i32,
    id: Uuid,
    name: &str,
    email: &str,
    version: i64,
) -> anyhow::Result<()> {
    let newer = diesel::sql_query(
        "INSERT INTO order_read.users (generation, id, name, email, version) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (generation, id) DO UPDATE \
         SET name = excluded.name, email = excluded.email, version = excluded.version \
         WHERE order_read.users.version < excluded.version",
    )
    .bind::<Integer, _>(g)
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(name)
    .bind::<Text, _>(email)
    .bind::<BigInt, _>(version)
    .execute(conn)
    .await?;
    if newer == 1 {
        diesel::update(
            orders::table
                .filter(orders::generation.eq(g))
                .filter(orders::user_id.eq(id)),
        )
        .set((orders::user_name.eq(name), orders::user_email.eq(email)))
        .execute(conn)
        .await?;
    }
    Ok(())
}

async fn product_seen(
    conn: &mut AsyncPgConnection,
    g: i32,
    id: Uuid,
    name: &str,
    version: i64,
) -> anyhow::Result<()> {
    let newer = diesel::sql_query(
        "INSERT INTO order_read.products (generation, id, name, version) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (generation, id) DO UPDATE SET name = excluded.name, version = excluded.version \
         WHERE order_read.products.version < excluded.version",
    )
    .bind::<Integer, _>(g)
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(name)
    .bind::<BigInt, _>(version)
    .execute(conn)
    .await?;
    if newer == 1 {
        diesel::update(
            order_items::table
                .filter(order_items::generation.eq(g))
                .filter(order_items::product_id.eq(id)),
        )
        .set(order_items::product_name.eq(name))
        .execute(conn)
        .await?;
    }
    Ok(())
}

async fn order_created(
    conn: &mut AsyncPgConnection,
    g: i32,
    event: &Envelope,
) -> anyhow::Result<()> {
    use crate::schema::read::users;
    let created: order_events::OrderCreated = event.payload()?;
    // The latest names seen in events win over the ones the order was placed with.
    let user: Option<(String, String)> = users::table
        .find((g, created.user_id.as_uuid()))
        .select((users::name, users::email))
        .first(conn)
        .await
        .optional()?;
    let (user_name, user_email) = user.unwrap_or((created.user_name, created.user_email));
    let inserted = diesel::insert_into(orders::table)
        .values((
            orders::generation.eq(g),
            orders::id.eq(event.aggregate_id),
            orders::user_id.eq(created.user_id.as_uuid()),
            orders::user_name.eq(user_name),
            orders::user_email.eq(user_email),
            orders::item_count.eq(created.items.len() as i32),
            orders::total.eq(created.total.amount()),
            orders::status.eq("pending"),
            orders::created_at.eq(event.occurred_at),
            orders::updated_at.eq(event.occurred_at),
            orders::version.eq(event.aggregate_version),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if inserted == 0 {
        return Ok(()); // delivered before
    }
    let ids: Vec<Uuid> = created
        .items
        .iter()
        .map(|l| l.product_id.as_uuid())
        .collect();
    let names: Vec<(Uuid, String)> = products::table
        .filter(products::generation.eq(g))
        .filter(products::id.eq_any(&ids))
        .select((products::id, products::name))
        .load(conn)
        .await?;
    let rows: Vec<_> = created
        .items
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let name = names
                .iter()
                .find(|(id, _)| *id == line.product_id.as_uuid())
                .map_or(line.product_name.clone(), |(_, name)| name.clone());
            (
                order_items::generation.eq(g),
                order_items::order_id.eq(event.aggregate_id),
                order_items::line.eq(i as i32),
                order_items::product_id.eq(line.product_id.as_uuid()),
                order_items::product_name.eq(name),
                order_items::quantity.eq(line.quantity),
                order_items::price.eq(line.price.amount()),
            )
        })
        .collect();
    diesel::insert_into(order_items::table)
        .values(rows)
        .execute(conn)
        .await?;
    Ok(())
}

async fn status(
    conn: &mut AsyncPgConnection,
    g: i32,
    event: &Envelope,
    status: &str,
    cancel_reason: Option<String>,
) -> anyhow::Result<()> {
    let target = orders::table.find((g, event.aggregate_id));
    let updated = diesel::update(target.filter(orders::version.lt(event.aggregate_version)))
        .set((
            orders::status.eq(status),
            orders::cancel_reason.eq(cancel_reason),
            orders::version.eq(event.aggregate_version),
            orders::updated_at.eq(event.occurred_at),
        ))
        .execute(conn)
        .await?;
    if updated == 0 {
        let known: i64 = target.count().get_result(conn).await?;
        anyhow::ensure!(
            known == 1,
            "{} for order {} arrived before its order.created",
            event.event_type,
            event.aggregate_id
        );
    }
    Ok(())
}
