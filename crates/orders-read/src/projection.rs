//! The `orders_read` projection: builds the denormalized read model from order, user and
//! product events only (it never reads another module's tables).
//!
//! Every write is guarded by the aggregate version it carries, so delivering an event a
//! second time changes nothing. The latest user and product names are kept once, in
//! `orders_read.users` and `orders_read.products`, and joined by the queries (`queries.rs`);
//! an order keeps the names it was placed with, which answer until its user's or product's
//! first event arrives. So a rename writes one row, however many orders name the user or
//! the product, and reaches every order whichever event arrives first: no event's
//! transaction grows with the read model. Every row belongs to a generation (see
//! `rebuild.rs`): the live projection writes the live one, a rebuild writes the one it
//! builds.
//!
//! One code path: a batch of events ([`Subscriber::apply_batch`]) is folded into a
//! [`Batch`] and written in a handful of set-based statements; a single event
//! ([`Subscriber::apply`]) is a batch of one. `tests/it/projection.rs` proves that any
//! split of a sequence into batches leaves the same read model as one event at a time.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Integer, Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use eventlog::Subscriber;
use kernel::{Envelope, Subscribes};
use orders_api::{OrderStatus, events as order_events};
use products_api::events as product_events;
use users_api::events as user_events;
use uuid::Uuid;

use crate::schema::{generations, orders};
use crate::states::{GenerationState, StoredStatus};

/// The live projection's name (and checkpoint key).
pub(crate) const NAME: &str = "orders_read";
/// The name a rebuild runs under while it builds a generation.
pub(crate) const REBUILD_NAME: &str = "orders_read_rebuild";

/// What the projection reads: the event catalog's entry, and the filter [`Batch::add`]
/// applies (an event of another type passes by; a type listed here without an arm there is
/// an error, so the two cannot drift apart).
pub const SUBSCRIBES: Subscribes = Subscribes {
    subscriber: NAME,
    summary: "Projects orders, with their users' and products' latest names, into the read \
              model that queries answer from.",
    sources: &[
        (
            "users",
            &[user_events::USER_REGISTERED, user_events::USER_UPDATED],
        ),
        (
            "products",
            &[
                product_events::PRODUCT_CREATED,
                product_events::PRODUCT_UPDATED,
            ],
        ),
        (
            "orders",
            &[
                order_events::ORDER_CREATED,
                order_events::ORDER_CONFIRMED,
                order_events::ORDER_SHIPPED,
                order_events::ORDER_DELIVERED,
                order_events::ORDER_CANCELLED,
            ],
        ),
    ],
};

/// The projection of order, user and product events into the read model.
pub struct OrderProjection {
    /// `None`: whichever generation is live when an event is applied.
    generation: Option<i32>,
}

impl OrderProjection {
    /// The projection that keeps the live generation current.
    pub fn live() -> Self {
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
        .filter(generations::state.eq(GenerationState::Live))
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

    /// The read model is the logs' projection and nothing but: a step lost with a crash of
    /// Postgres is applied again from the checkpoint lost with it (and a rebuild's switch
    /// commits with a flush, which flushes every step before it).
    fn derived(&self) -> bool {
        true
    }

    /// A batch of one.
    async fn apply(
        &self,
        conn: &mut AsyncPgConnection,
        source: &str,
        event: &Envelope,
    ) -> anyhow::Result<()> {
        self.apply_batch(conn, source, &[event]).await?;
        Ok(())
    }

    async fn apply_batch(
        &self,
        conn: &mut AsyncPgConnection,
        _source: &str,
        events: &[&Envelope],
    ) -> anyhow::Result<bool> {
        let generation = match self.generation {
            Some(generation) => generation,
            None => live_generation(conn).await?,
        };
        let mut batch = Batch::default();
        for event in events {
            if SUBSCRIBES.handles(&event.event_type) {
                batch.add(event)?;
            }
        }
        batch.apply(conn, generation).await?;
        if self.generation.is_none() {
            // Wakes every instance's read-your-writes waiters, once this commits.
            eventlog::signal(crate::MOVED);
        }
        Ok(true)
    }
}

/// Events folded into set-based writes with the effect of applying them one by one. Every
/// write of the projection overwrites a whole row and is guarded by the aggregate version,
/// so of each user, product or order status only the newest version in the batch matters,
/// and of each order only its first creation (a redelivery is the same event); orders are
/// created before any status changes (a status change of an order always comes after its
/// creation in the log); names are rows of their own, which the creations do not read.
#[derive(Default)]
struct Batch {
    /// Per user, its newest version.
    users: BTreeMap<Uuid, UserSeen>,
    /// Per product, its newest version.
    products: BTreeMap<Uuid, ProductSeen>,
    /// Per order, its creation.
    created: BTreeMap<Uuid, OrderCreated>,
    /// Per order, its newest status change.
    statuses: BTreeMap<Uuid, StatusChange>,
}

struct UserSeen {
    version: i64,
    name: String,
    email: String,
}

struct ProductSeen {
    version: i64,
    name: String,
}

struct OrderCreated {
    version: i64,
    at: DateTime<Utc>,
    order: order_events::OrderCreated,
}

struct StatusChange {
    /// For the error that names an event that arrived before its order.
    event_type: String,
    version: i64,
    status: OrderStatus,
    cancel_reason: Option<String>,
    at: DateTime<Utc>,
}

/// Keeps `new` in `map` under `id` unless the map holds a newer or equal version.
fn keep_newest<T>(map: &mut BTreeMap<Uuid, T>, id: Uuid, new: T, version: impl Fn(&T) -> i64) {
    if map
        .get(&id)
        .is_none_or(|held| version(held) < version(&new))
    {
        map.insert(id, new);
    }
}

impl Batch {
    fn add(&mut self, event: &Envelope) -> anyhow::Result<()> {
        let (id, version) = (event.aggregate_id, event.aggregate_version);
        let status = |status, cancel_reason| StatusChange {
            event_type: event.event_type.clone(),
            version,
            status,
            cancel_reason,
            at: event.occurred_at,
        };
        match event.event_type.as_str() {
            user_events::USER_REGISTERED | user_events::USER_UPDATED => {
                let (name, email) = if event.event_type == user_events::USER_REGISTERED {
                    let user: user_events::UserRegistered = event.payload()?;
                    (user.name, user.email)
                } else {
                    let user: user_events::UserUpdated = event.payload()?;
                    (user.name, user.email)
                };
                let seen = UserSeen {
                    version,
                    name,
                    email,
                };
                keep_newest(&mut self.users, id, seen, |u| u.version);
            }
            product_events::PRODUCT_CREATED | product_events::PRODUCT_UPDATED => {
                let name = if event.event_type == product_events::PRODUCT_CREATED {
                    event.payload::<product_events::ProductCreated>()?.name
                } else {
                    event.payload::<product_events::ProductUpdated>()?.name
                };
                let seen = ProductSeen { version, name };
                keep_newest(&mut self.products, id, seen, |p| p.version);
            }
            order_events::ORDER_CREATED => {
                let created = OrderCreated {
                    version,
                    at: event.occurred_at,
                    order: event.payload()?,
                };
                self.created.entry(id).or_insert(created);
            }
            order_events::ORDER_CONFIRMED => self.status(id, status(OrderStatus::Confirmed, None)),
            order_events::ORDER_SHIPPED => self.status(id, status(OrderStatus::Shipped, None)),
            order_events::ORDER_DELIVERED => self.status(id, status(OrderStatus::Delivered, None)),
            order_events::ORDER_CANCELLED => {
                let cancelled: order_events::OrderCancelled = event.payload()?;
                self.status(id, status(OrderStatus::Cancelled, Some(cancelled.reason)));
            }
            other => anyhow::bail!("{other} is in SUBSCRIBES but the projection has no arm for it"),
        }
        Ok(())
    }

    fn status(&mut self, id: Uuid, change: StatusChange) {
        keep_newest(&mut self.statuses, id, change, |s| s.version);
    }

    async fn apply(self, conn: &mut AsyncPgConnection, generation: i32) -> anyhow::Result<()> {
        if !self.users.is_empty() {
            users_seen(conn, generation, self.users).await?;
        }
        if !self.products.is_empty() {
            products_seen(conn, generation, self.products).await?;
        }
        let mut changes = self.statuses;
        if !self.created.is_empty() {
            orders_created(conn, generation, self.created, &mut changes).await?;
        }
        if !changes.is_empty() {
            statuses(conn, generation, changes).await?;
        }
        Ok(())
    }
}

/// Raw: an `unnest` batch upsert, guarded by version. One row per user: the orders are
/// not touched (the queries join the name).
const USERS_SEEN: &str = "INSERT INTO orders_read.users (generation, id, name, email, version) \
       SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bigint[]) \
       ON CONFLICT (generation, id) DO UPDATE \
       SET name = excluded.name, email = excluded.email, version = excluded.version \
       WHERE orders_read.users.version < excluded.version";

async fn users_seen(
    conn: &mut AsyncPgConnection,
    generation: i32,
    users: BTreeMap<Uuid, UserSeen>,
) -> anyhow::Result<()> {
    let (mut ids, mut names, mut emails, mut versions) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, user) in users {
        ids.push(id);
        names.push(user.name);
        emails.push(user.email);
        versions.push(user.version);
    }
    kernel::db::prepared(
        diesel::sql_query(USERS_SEEN)
            .bind::<Integer, _>(generation)
            .bind::<Array<SqlUuid>, _>(ids)
            .bind::<Array<Text>, _>(names)
            .bind::<Array<Text>, _>(emails)
            .bind::<Array<BigInt>, _>(versions),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Raw: an `unnest` batch upsert, guarded by version. One row per product: the order
/// items are not touched (the queries join the name).
const PRODUCTS_SEEN: &str = "INSERT INTO orders_read.products (generation, id, name, version) \
       SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::bigint[]) \
       ON CONFLICT (generation, id) DO UPDATE \
       SET name = excluded.name, version = excluded.version \
       WHERE orders_read.products.version < excluded.version";

async fn products_seen(
    conn: &mut AsyncPgConnection,
    generation: i32,
    products: BTreeMap<Uuid, ProductSeen>,
) -> anyhow::Result<()> {
    let (mut ids, mut names, mut versions) = (Vec::new(), Vec::new(), Vec::new());
    for (id, product) in products {
        ids.push(id);
        names.push(product.name);
        versions.push(product.version);
    }
    kernel::db::prepared(
        diesel::sql_query(PRODUCTS_SEEN)
            .bind::<Integer, _>(generation)
            .bind::<Array<SqlUuid>, _>(ids)
            .bind::<Array<Text>, _>(names)
            .bind::<Array<BigInt>, _>(versions),
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Raw: an `unnest` batch insert, with the names the order was placed with; skips orders
/// delivered before.
const ORDERS_CREATED: &str = "INSERT INTO orders_read.orders (generation, id, user_id, user_name, user_email, \
       item_count, total, status, cancel_reason, created_at, updated_at, version) \
     SELECT $1, c.* \
     FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::int[], $7::numeric[], \
       $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::bigint[]) \
       AS c(id, user_id, user_name, user_email, item_count, total, status, cancel_reason, \
         created_at, updated_at, version) \
     ON CONFLICT DO NOTHING RETURNING id";

/// Raw: an `unnest` batch insert, with the product names the order was placed with.
const ITEMS_CREATED: &str = "INSERT INTO orders_read.order_items (generation, order_id, line, product_id, \
       product_name, quantity, price) \
     SELECT $1, * FROM unnest($2::uuid[], $3::int[], $4::uuid[], $5::text[], $6::bigint[], \
       $7::numeric[])";

/// The creation of the batch's orders, two statements. An order whose status changes in
/// the same batch is inserted with its newest status at once (the change is taken out of
/// `statuses`), as applying its creation and then the change would leave it.
async fn orders_created(
    conn: &mut AsyncPgConnection,
    generation: i32,
    created: BTreeMap<Uuid, OrderCreated>,
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
        status: Vec<StoredStatus>,
        cancel_reason: Vec<Option<&'a str>>,
        updated_at: Vec<DateTime<Utc>>,
        version: Vec<i64>,
    }
    let mut columns = Columns::default();
    for (id, creation) in &created {
        let order = &creation.order;
        let newest = statuses.get(id).filter(|s| s.version > creation.version);
        columns.id.push(*id);
        columns.user_id.push(order.user_id.as_uuid());
        columns.user_name.push(&order.user_name);
        columns.user_email.push(&order.user_email);
        columns.item_count.push(order.items.len() as i32);
        columns.total.push(order.total.amount());
        columns.created_at.push(creation.at);
        columns.status.push(StoredStatus(
            newest.map_or(OrderStatus::Pending, |s| s.status),
        ));
        columns
            .cancel_reason
            .push(newest.and_then(|s| s.cancel_reason.as_deref()));
        columns
            .updated_at
            .push(newest.map_or(creation.at, |s| s.at));
        columns
            .version
            .push(newest.map_or(creation.version, |s| s.version));
    }
    let inserted: Vec<Inserted> = kernel::db::prepared(
        diesel::sql_query(ORDERS_CREATED)
            .bind::<Integer, _>(generation)
            .bind::<Array<SqlUuid>, _>(columns.id)
            .bind::<Array<SqlUuid>, _>(columns.user_id)
            .bind::<Array<Text>, _>(columns.user_name)
            .bind::<Array<Text>, _>(columns.user_email)
            .bind::<Array<Integer>, _>(columns.item_count)
            .bind::<Array<Numeric>, _>(columns.total)
            .bind::<Array<Text>, _>(columns.status)
            .bind::<Array<Nullable<Text>>, _>(columns.cancel_reason)
            .bind::<Array<Timestamptz>, _>(columns.created_at)
            .bind::<Array<Timestamptz>, _>(columns.updated_at)
            .bind::<Array<BigInt>, _>(columns.version),
    )
    .load(conn)
    .await?;
    let inserted: BTreeSet<Uuid> = inserted.into_iter().map(|r| r.id).collect();
    // Orders delivered before still take their status changes the usual way.
    statuses.retain(|id, _| !inserted.contains(id));
    // Items of the orders inserted now (the others were delivered before).
    let (mut order_ids, mut lines, mut product_ids, mut names, mut quantities, mut prices) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (id, creation) in created.iter().filter(|(id, _)| inserted.contains(id)) {
        for (line, item) in creation.order.items.iter().enumerate() {
            order_ids.push(*id);
            lines.push(line as i32);
            product_ids.push(item.product_id.as_uuid());
            names.push(item.product_name.as_str());
            quantities.push(item.quantity);
            prices.push(item.price.amount());
        }
    }
    if order_ids.is_empty() {
        return Ok(());
    }
    kernel::db::prepared(
        diesel::sql_query(ITEMS_CREATED)
            .bind::<Integer, _>(generation)
            .bind::<Array<SqlUuid>, _>(order_ids)
            .bind::<Array<Integer>, _>(lines)
            .bind::<Array<SqlUuid>, _>(product_ids)
            .bind::<Array<Text>, _>(names)
            .bind::<Array<BigInt>, _>(quantities)
            .bind::<Array<Numeric>, _>(prices),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Raw: an `unnest` batch of status changes (`UPDATE ... FROM`), guarded by version.
const STATUSES_CHANGED: &str = "UPDATE orders_read.orders o SET status = s.status, \
       cancel_reason = s.cancel_reason, version = s.version, updated_at = s.at \
     FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[]) \
       AS s(id, status, cancel_reason, version, at) \
     WHERE o.generation = $1 AND o.id = s.id AND o.version < s.version";

/// The newest status change of each order, then a check that every one of them exists
/// (else the batch fails, naming the event that arrived before its order).
async fn statuses(
    conn: &mut AsyncPgConnection,
    generation: i32,
    changes: BTreeMap<Uuid, StatusChange>,
) -> anyhow::Result<()> {
    let (mut ids, mut statuses, mut reasons, mut versions, mut ats) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, change) in &changes {
        ids.push(*id);
        statuses.push(StoredStatus(change.status));
        reasons.push(change.cancel_reason.as_deref());
        versions.push(change.version);
        ats.push(change.at);
    }
    kernel::db::prepared(
        diesel::sql_query(STATUSES_CHANGED)
            .bind::<Integer, _>(generation)
            .bind::<Array<SqlUuid>, _>(&ids)
            .bind::<Array<Text>, _>(statuses)
            .bind::<Array<Nullable<Text>>, _>(reasons)
            .bind::<Array<BigInt>, _>(versions)
            .bind::<Array<Timestamptz>, _>(ats),
    )
    .execute(conn)
    .await?;
    let known: BTreeSet<Uuid> = orders::table
        .filter(orders::generation.eq(generation))
        .filter(orders::id.eq_any(&ids))
        .select(orders::id)
        .load::<Uuid>(conn)
        .await?
        .into_iter()
        .collect();
    if let Some((id, early)) = changes.iter().find(|(id, _)| !known.contains(id)) {
        anyhow::bail!(
            "{} for order {id} arrived before its order.created",
            early.event_type
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGS: [kernel::Log; 3] = [user_events::LOG, product_events::LOG, order_events::LOG];

    /// `SUBSCRIBES` (the catalog's entry, and the filter) names exactly the event types
    /// [`Batch::add`] has an arm for, of every log the projection reads: each type's sample
    /// is added without the filter, and fails exactly when it is not listed.
    #[test]
    fn the_projection_reads_exactly_the_types_it_subscribes_to() {
        for log in LOGS {
            for contract in log.events {
                let event_type = contract.event_type;
                let event = Envelope {
                    event_id: Uuid::now_v7(),
                    event_type: event_type.to_owned(),
                    aggregate_id: Uuid::now_v7(),
                    aggregate_version: 2,
                    occurred_at: Utc::now(),
                    schema_version: contract.schema_version,
                    actor: kernel::Actor::SYSTEM,
                    correlation_id: None,
                    payload: Envelope::raw_payload(&(contract.sample)()),
                };
                let added = Batch::default().add(&event);
                assert_eq!(
                    added.is_ok(),
                    SUBSCRIBES.handles(event_type),
                    "{event_type}: {added:?}"
                );
            }
        }
        assert_eq!(SUBSCRIBES.unknown_in(&LOGS), Vec::<String>::new());
    }
}
