//! The `orders_read` projection: builds the denormalized read model from order, user and
//! product events only (it never reads another module's tables).
//!
//! Every write is guarded by the aggregate version it carries, so delivering an event a
//! second time changes nothing. User and product names are kept in `orders_read.users` and
//! `orders_read.products` and copied onto orders, so a rename reaches every order whichever
//! event arrives first. Every row belongs to a generation (see `rebuild.rs`): the live
//! projection writes the live one, a rebuild writes the one it builds.
//!
//! Events come one at a time ([`Subscriber::apply`]) or, in the common case, a batch at a
//! time ([`Subscriber::apply_batch`], see [`Batch`]): a handful of set-based statements
//! with the same effect as applying each event in turn.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Integer, Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use eventlog::Subscriber;
use kernel::Envelope;
use orders_api::events as order_events;
use products_api::events as product_events;
use users_api::events as user_events;
use uuid::Uuid;

use crate::schema::{generations, order_items, orders, products};

/// The live projection's name (and checkpoint key).
pub(crate) const NAME: &str = "orders_read";
/// The name a rebuild runs under while it builds a generation.
pub(crate) const REBUILD_NAME: &str = "orders_read_rebuild";

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

    async fn apply_batch(
        &self,
        conn: &mut AsyncPgConnection,
        _source: &str,
        events: &[&Envelope],
    ) -> anyhow::Result<bool> {
        let g = match self.generation {
            Some(g) => g,
            None => live_generation(conn).await?,
        };
        let mut batch = Batch::default();
        for event in events {
            batch.add(event)?;
        }
        batch.apply(conn, g).await?;
        Ok(true)
    }
}

/// Events folded into set-based writes with the effect of applying them one by one. Every
/// write of the projection overwrites a whole row and is guarded by the aggregate version,
/// so of each user, product or order status only the newest version in the batch matters;
/// orders are created before any status changes (a status change of an order always comes
/// after its creation in the log); a batch comes from one source, so no rename is
/// interleaved with the orders it would reach.
#[derive(Default)]
struct Batch {
    /// Per user: version, name, email.
    users: BTreeMap<Uuid, (i64, String, String)>,
    /// Per product: version, name.
    products: BTreeMap<Uuid, (i64, String)>,
    created: Vec<(Uuid, i64, DateTime<Utc>, order_events::OrderCreated)>,
    /// Per order, its newest status change.
    statuses: BTreeMap<Uuid, StatusChange>,
}

struct StatusChange {
    version: i64,
    status: &'static str,
    cancel_reason: Option<String>,
    at: DateTime<Utc>,
}

impl Batch {
    fn add(&mut self, event: &Envelope) -> anyhow::Result<()> {
        let (id, version) = (event.aggregate_id, event.aggregate_version);
        let status = |status, cancel_reason| StatusChange {
            version,
            status,
            cancel_reason,
            at: event.occurred_at,
        };
        match event.event_type.as_str() {
            user_events::USER_REGISTERED | user_events::USER_UPDATED => {
                let user: user_events::UserUpdated = event.payload()?;
                if self.users.get(&id).is_none_or(|(v, ..)| *v < version) {
                    self.users.insert(id, (version, user.name, user.email));
                }
            }
            product_events::PRODUCT_CREATED | product_events::PRODUCT_UPDATED => {
                let product: product_events::ProductUpdated = event.payload()?;
                if self.products.get(&id).is_none_or(|(v, _)| *v < version) {
                    self.products.insert(id, (version, product.name));
                }
            }
            order_events::ORDER_CREATED => {
                self.created
                    .push((id, version, event.occurred_at, event.payload()?));
            }
            order_events::ORDER_CONFIRMED => self.status(id, status("confirmed", None)),
            order_events::ORDER_SHIPPED => self.status(id, status("shipped", None)),
            order_events::ORDER_DELIVERED => self.status(id, status("delivered", None)),
            order_events::ORDER_CANCELLED => {
                let cancelled: order_events::OrderCancelled = event.payload()?;
                self.status(id, status("cancelled", Some(cancelled.reason)));
            }
            _ => {}
        }
        Ok(())
    }

    fn status(&mut self, id: Uuid, change: StatusChange) {
        if self
            .statuses
            .get(&id)
            .is_none_or(|newest| newest.version < change.version)
        {
            self.statuses.insert(id, change);
        }
    }

    async fn apply(self, conn: &mut AsyncPgConnection, g: i32) -> anyhow::Result<()> {
        if !self.users.is_empty() {
            let (ids, rest): (Vec<Uuid>, Vec<_>) = self.users.into_iter().unzip();
            let (versions, names, emails) = unzip3(rest);
            diesel::sql_query(
                "WITH newer AS ( \
                   INSERT INTO orders_read.users (generation, id, name, email, version) \
                   SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bigint[]) \
                   ON CONFLICT (generation, id) DO UPDATE \
                   SET name = excluded.name, email = excluded.email, version = excluded.version \
                   WHERE orders_read.users.version < excluded.version \
                   RETURNING id, name, email) \
                 UPDATE orders_read.orders o SET user_name = newer.name, user_email = newer.email \
                 FROM newer WHERE o.generation = $1 AND o.user_id = newer.id",
            )
            .bind::<Integer, _>(g)
            .bind::<Array<SqlUuid>, _>(ids)
            .bind::<Array<Text>, _>(names)
            .bind::<Array<Text>, _>(emails)
            .bind::<Array<BigInt>, _>(versions)
            .execute(conn)
            .await?;
        }
        if !self.products.is_empty() {
            let (ids, rest): (Vec<Uuid>, Vec<(i64, String)>) = self.products.into_iter().unzip();
            let (versions, names): (Vec<i64>, Vec<String>) = rest.into_iter().unzip();
            diesel::sql_query(
                "WITH newer AS ( \
                   INSERT INTO orders_read.products (generation, id, name, version) \
                   SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::bigint[]) \
                   ON CONFLICT (generation, id) DO UPDATE \
                   SET name = excluded.name, version = excluded.version \
                   WHERE orders_read.products.version < excluded.version \
                   RETURNING id, name) \
                 UPDATE orders_read.order_items i SET product_name = newer.name \
                 FROM newer WHERE i.generation = $1 AND i.product_id = newer.id",
            )
            .bind::<Integer, _>(g)
            .bind::<Array<SqlUuid>, _>(ids)
            .bind::<Array<Text>, _>(names)
            .bind::<Array<BigInt>, _>(versions)
            .execute(conn)
            .await?;
        }
        let mut changes = self.statuses;
        if !self.created.is_empty() {
            orders_created(conn, g, self.created, &mut changes).await?;
        }
        if !changes.is_empty() {
            statuses(conn, g, changes).await?;
        }
        Ok(())
    }
}

fn unzip3<A, B, C>(items: Vec<(A, B, C)>) -> (Vec<A>, Vec<B>, Vec<C>) {
    let mut unzipped = (Vec::new(), Vec::new(), Vec::new());
    for (a, b, c) in items {
        unzipped.0.push(a);
        unzipped.1.push(b);
        unzipped.2.push(c);
    }
    unzipped
}

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// [`order_created`] for many orders, two statements. An order whose status changes in
/// the same batch is inserted with its newest status at once (the change is taken out of
/// `statuses`), as applying its creation and then the change would leave it.
async fn orders_created(
    conn: &mut AsyncPgConnection,
    g: i32,
    created: Vec<(Uuid, i64, DateTime<Utc>, order_events::OrderCreated)>,
    statuses: &mut BTreeMap<Uuid, StatusChange>,
) -> anyhow::Result<()> {
    #[derive(Default)]
    struct Columns<'a> {
        id: Vec<Uuid>,
        user_id: Vec<Uuid>,
        user_name: Vec<&'a str>,
        user_email: Vec<&'a str>,
        item_count: Vec<i32>,
        total: Vec<rust_decimal::Decimal>,
        created_at: Vec<DateTime<Utc>>,
        status: Vec<&'static str>,
        cancel_reason: Vec<Option<&'a str>>,
        updated_at: Vec<DateTime<Utc>>,
        version: Vec<i64>,
    }
    let mut c = Columns::default();
    for (id, version, at, order) in &created {
        let newest = statuses.get(id).filter(|s| s.version > *version);
        c.id.push(*id);
        c.user_id.push(order.user_id.as_uuid());
        c.user_name.push(&order.user_name);
        c.user_email.push(&order.user_email);
        c.item_count.push(order.items.len() as i32);
        c.total.push(order.total.amount());
        c.created_at.push(*at);
        c.status.push(newest.map_or("pending", |s| s.status));
        c.cancel_reason
            .push(newest.and_then(|s| s.cancel_reason.as_deref()));
        c.updated_at.push(newest.map_or(*at, |s| s.at));
        c.version.push(newest.map_or(*version, |s| s.version));
    }
    // The latest names seen in events win over the ones the order was placed with.
    let inserted: Vec<Inserted> = diesel::sql_query(
        "INSERT INTO orders_read.orders (generation, id, user_id, user_name, user_email, item_count, \
           total, status, cancel_reason, created_at, updated_at, version) \
         SELECT $1, c.id, c.user_id, coalesce(u.name, c.user_name), coalesce(u.email, c.user_email), \
           c.item_count, c.total, c.status, c.cancel_reason, c.created_at, c.updated_at, c.version \
         FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::int[], $7::numeric[], \
           $8::timestamptz[], $9::text[], $10::text[], $11::timestamptz[], $12::bigint[]) \
           AS c(id, user_id, user_name, user_email, item_count, total, created_at, status, \
             cancel_reason, updated_at, version) \
         LEFT JOIN orders_read.users u ON u.generation = $1 AND u.id = c.user_id \
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind::<Integer, _>(g)
    .bind::<Array<SqlUuid>, _>(c.id)
    .bind::<Array<SqlUuid>, _>(c.user_id)
    .bind::<Array<Text>, _>(c.user_name)
    .bind::<Array<Text>, _>(c.user_email)
    .bind::<Array<Integer>, _>(c.item_count)
    .bind::<Array<Numeric>, _>(c.total)
    .bind::<Array<Timestamptz>, _>(c.created_at)
    .bind::<Array<Text>, _>(c.status)
    .bind::<Array<Nullable<Text>>, _>(c.cancel_reason)
    .bind::<Array<Timestamptz>, _>(c.updated_at)
    .bind::<Array<BigInt>, _>(c.version)
    .load(conn)
    .await?;
    let inserted: std::collections::BTreeSet<Uuid> = inserted.into_iter().map(|r| r.id).collect();
    // Orders delivered before still take their status changes the usual way.
    statuses.retain(|id, _| !inserted.contains(id));
    // Items of the orders inserted now (the others were delivered before).
    let mut lines = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (id, _, _, order) in created.iter().filter(|(id, ..)| inserted.contains(id)) {
        for (i, line) in order.items.iter().enumerate() {
            lines.0.push(*id);
            lines.1.push(i as i32);
            lines.2.push(line.product_id.as_uuid());
            lines.3.push(line.product_name.as_str());
            lines.4.push(line.quantity);
            lines.5.push(line.price.amount());
        }
    }
    if lines.0.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "INSERT INTO orders_read.order_items (generation, order_id, line, product_id, product_name, \
           quantity, price) \
         SELECT $1, i.order_id, i.line, i.product_id, coalesce(p.name, i.product_name), i.quantity, i.price \
         FROM unnest($2::uuid[], $3::int[], $4::uuid[], $5::text[], $6::bigint[], $7::numeric[]) \
           AS i(order_id, line, product_id, product_name, quantity, price) \
         LEFT JOIN orders_read.products p ON p.generation = $1 AND p.id = i.product_id",
    )
    .bind::<Integer, _>(g)
    .bind::<Array<SqlUuid>, _>(lines.0)
    .bind::<Array<Integer>, _>(lines.1)
    .bind::<Array<SqlUuid>, _>(lines.2)
    .bind::<Array<Text>, _>(lines.3)
    .bind::<Array<BigInt>, _>(lines.4)
    .bind::<Array<Numeric>, _>(lines.5)
    .execute(conn)
    .await?;
    Ok(())
}

/// [`status`] for many orders: the newest change of each, then a check that every one of
/// them exists (else the batch fails and its events are applied one by one, which names
/// the event that arrived early).
async fn statuses(
    conn: &mut AsyncPgConnection,
    g: i32,
    changes: BTreeMap<Uuid, StatusChange>,
) -> anyhow::Result<()> {
    let count = changes.len();
    let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, change) in changes {
        columns.0.push(id);
        columns.1.push(change.status);
        columns.2.push(change.cancel_reason);
        columns.3.push(change.version);
        columns.4.push(change.at);
    }
    let ids = columns.0.clone();
    diesel::sql_query(
        "UPDATE orders_read.orders o SET status = s.status, cancel_reason = s.cancel_reason, \
           version = s.version, updated_at = s.at \
         FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[]) \
           AS s(id, status, cancel_reason, version, at) \
         WHERE o.generation = $1 AND o.id = s.id AND o.version < s.version",
    )
    .bind::<Integer, _>(g)
    .bind::<Array<SqlUuid>, _>(columns.0)
    .bind::<Array<Text>, _>(columns.1)
    .bind::<Array<Nullable<Text>>, _>(columns.2)
    .bind::<Array<BigInt>, _>(columns.3)
    .bind::<Array<Timestamptz>, _>(columns.4)
    .execute(conn)
    .await?;
    #[derive(QueryableByName)]
    struct Known {
        #[diesel(sql_type = BigInt)]
        known: i64,
    }
    let known: Known = diesel::sql_query(
        "SELECT count(*) AS known FROM orders_read.orders WHERE generation = $1 AND id = ANY($2)",
    )
    .bind::<Integer, _>(g)
    .bind::<Array<SqlUuid>, _>(ids)
    .get_result(conn)
    .await?;
    anyhow::ensure!(
        known.known == count as i64,
        "a status change arrived before its order.created"
    );
    Ok(())
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
        "INSERT INTO orders_read.users (generation, id, name, email, version) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (generation, id) DO UPDATE \
         SET name = excluded.name, email = excluded.email, version = excluded.version \
         WHERE orders_read.users.version < excluded.version",
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
        "INSERT INTO orders_read.products (generation, id, name, version) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (generation, id) DO UPDATE SET name = excluded.name, version = excluded.version \
         WHERE orders_read.products.version < excluded.version",
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
    use crate::schema::users;
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
