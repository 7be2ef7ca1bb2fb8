//! The `order_read` projection: builds the denormalized read model from order, user and
//! product events only (it never reads another module's tables).
//!
//! Every write is guarded by the aggregate version it carries, so delivering an event a
//! second time changes nothing. User and product names are kept in `order_read.users` and
//! `order_read.products` and copied onto orders, so a rename reaches every order whichever
//! event arrives first.

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::Envelope;
use kernel::db::events::Subscriber;
use order_api::events as order_events;
use product_api::events as product_events;
use user_api::events as user_events;
use uuid::Uuid;

use crate::schema::read::{order_items, orders, products, users};

pub(crate) struct OrderProjection;

pub(crate) const NAME: &str = "order_read";

#[async_trait]
impl Subscriber for OrderProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(
        &self,
        conn: &mut AsyncPgConnection,
        _source: &str,
        event: &Envelope,
    ) -> anyhow::Result<()> {
        let id = event.aggregate_id;
        let version = event.aggregate_version;
        match event.event_type.as_str() {
            user_events::USER_REGISTERED | user_events::USER_UPDATED => {
                let user: user_events::UserUpdated = event.payload()?;
                user_seen(conn, id, &user.name, &user.email, version).await
            }
            product_events::PRODUCT_CREATED | product_events::PRODUCT_UPDATED => {
                let product: product_events::ProductUpdated = event.payload()?;
                product_seen(conn, id, &product.name, version).await
            }
            order_events::ORDER_CREATED => order_created(conn, event).await,
            order_events::ORDER_CONFIRMED => status(conn, event, "confirmed", None).await,
            order_events::ORDER_SHIPPED => status(conn, event, "shipped", None).await,
            order_events::ORDER_DELIVERED => status(conn, event, "delivered", None).await,
            order_events::ORDER_CANCELLED => {
                let cancelled: order_events::OrderCancelled = event.payload()?;
                status(conn, event, "cancelled", Some(cancelled.reason)).await
            }
            _ => Ok(()),
        }
    }
}

async fn user_seen(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    name: &str,
    email: &str,
    version: i64,
) -> anyhow::Result<()> {
    let newer = diesel::sql_query(
        "INSERT INTO order_read.users (id, name, email, version) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email, version = excluded.version \
         WHERE order_read.users.version < excluded.version",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(name)
    .bind::<Text, _>(email)
    .bind::<BigInt, _>(version)
    .execute(conn)
    .await?;
    if newer == 1 {
        diesel::update(orders::table.filter(orders::user_id.eq(id)))
            .set((orders::user_name.eq(name), orders::user_email.eq(email)))
            .execute(conn)
            .await?;
    }
    Ok(())
}

async fn product_seen(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    name: &str,
    version: i64,
) -> anyhow::Result<()> {
    let newer = diesel::sql_query(
        "INSERT INTO order_read.products (id, name, version) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, version = excluded.version \
         WHERE order_read.products.version < excluded.version",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(name)
    .bind::<BigInt, _>(version)
    .execute(conn)
    .await?;
    if newer == 1 {
        diesel::update(order_items::table.filter(order_items::product_id.eq(id)))
            .set(order_items::product_name.eq(name))
            .execute(conn)
            .await?;
    }
    Ok(())
}

async fn order_created(conn: &mut AsyncPgConnection, event: &Envelope) -> anyhow::Result<()> {
    let created: order_events::OrderCreated = event.payload()?;
    // The latest names seen in events win over the ones the order was placed with.
    let user: Option<(String, String)> = users::table
        .find(created.user_id.as_uuid())
        .select((users::name, users::email))
        .first(conn)
        .await
        .optional()?;
    let (user_name, user_email) = user.unwrap_or((created.user_name, created.user_email));
    let inserted = diesel::insert_into(orders::table)
        .values((
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
    event: &Envelope,
    status: &str,
    cancel_reason: Option<String>,
) -> anyhow::Result<()> {
    let updated = diesel::update(
        orders::table
            .find(event.aggregate_id)
            .filter(orders::version.lt(event.aggregate_version)),
    )
    .set((
        orders::status.eq(status),
        orders::cancel_reason.eq(cancel_reason),
        orders::version.eq(event.aggregate_version),
        orders::updated_at.eq(event.occurred_at),
    ))
    .execute(conn)
    .await?;
    if updated == 0 {
        let known: i64 = orders::table
            .find(event.aggregate_id)
            .count()
            .get_result(conn)
            .await?;
        anyhow::ensure!(
            known == 1,
            "{} for order {} arrived before its order.created",
            event.event_type,
            event.aggregate_id
        );
    }
    Ok(())
}
