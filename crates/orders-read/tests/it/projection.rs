//! The projection's one code path, proven split-invariant: random sequences of user,
//! product and order events (renames, every order status, redeliveries, versions out of
//! order) applied one at a time into one database and in random batches into others leave
//! identical read models, table for table; and one at a time, the read model is what the
//! history says (newest status, version and names), with list totals that agree with it.
//!
//! A failure prints its seed; `PROJECTION_SEED=<seed>` replays that one case.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use eventlog::Subscriber;
use kernel::db::{self, Pool};
use kernel::{Envelope, Money, PaymentId, ProductId, UserId};
use orders_api::{OrderStatus, events as order_events};
use orders_read::OrderProjection;
use products_api::events as product_events;
use users_api::events as user_events;
use uuid::Uuid;

/// Cases per run, and batch splits tried per case.
const CASES: u64 = 40;
const SPLITS: usize = 3;

/// splitmix64: small, seeded, good enough to pick test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn uuid(&mut self) -> Uuid {
        Uuid::from_u64_pair(self.next(), self.next())
    }
}

const NAMES: [&str; 4] = ["Ann", "Bob", "Cyd", "Dee"];
const REASONS: [&str; 2] = ["changed my mind", "expired"];

/// A product's first event (`product.created`) or a later one (`product.updated`), named
/// `name`, with its payload.
pub(crate) fn product_payload(created: bool, name: &str) -> (&'static str, serde_json::Value) {
    let (description, price) = ("a lamp".to_owned(), Money::parse("12.50").expect("a price"));
    let name = name.to_owned();
    if created {
        let payload = product_events::ProductCreated {
            name,
            description,
            price,
            stock: 10,
        };
        (
            product_events::PRODUCT_CREATED,
            serde_json::to_value(payload).unwrap(),
        )
    } else {
        let payload = product_events::ProductUpdated {
            name,
            description,
            price,
        };
        (
            product_events::PRODUCT_UPDATED,
            serde_json::to_value(payload).unwrap(),
        )
    }
}

/// An event as one of the three logs delivers it.
#[derive(Clone)]
struct Delivery {
    source: &'static str,
    event: Envelope,
}

struct Order {
    id: Uuid,
    status: OrderStatus,
    version: i64,
    user: Uuid,
    /// The user's name as placed, and each item's product and name as placed.
    placed_as: String,
    items: Vec<(Uuid, String)>,
}

/// Builds one random history, in delivery order.
struct History {
    rng: Rng,
    clock: DateTime<Utc>,
    users: Vec<(Uuid, i64)>,
    products: Vec<(Uuid, i64)>,
    orders: Vec<Order>,
    /// The newest name of each user and product that had an event.
    names: BTreeMap<Uuid, String>,
    delivered: Vec<Delivery>,
}

impl History {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let users = (0..3).map(|_| (rng.uuid(), 0)).collect();
        let products = (0..3).map(|_| (rng.uuid(), 0)).collect();
        History {
            rng,
            clock: DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time"),
            users,
            products,
            orders: Vec::new(),
            names: BTreeMap::new(),
            delivered: Vec::new(),
        }
    }

    fn envelope(
        &mut self,
        event_type: &str,
        id: Uuid,
        version: i64,
        payload: impl serde::Serialize,
    ) -> Envelope {
        self.clock += TimeDelta::seconds(1);
        Envelope {
            event_id: self.rng.uuid(),
            event_type: event_type.to_owned(),
            aggregate_id: id,
            aggregate_version: version,
            occurred_at: self.clock,
            // As the writer labels it: the version its module's contract writes now.
            schema_version: [
                user_events::LOG,
                product_events::LOG,
                orders_api::events::LOG,
            ]
            .iter()
            .find_map(|log| log.contract(event_type))
            .map_or(1, |contract| contract.schema_version),
            actor: kernel::Actor::SYSTEM,
            correlation_id: None,
            payload: serde_json::value::to_raw_value(&payload).expect("payloads serialize"),
        }
    }

    fn deliver(&mut self, source: &'static str, event: Envelope) {
        self.delivered.push(Delivery { source, event });
    }

    /// The next version of a user (`registered` first), or two of them delivered newest
    /// first.
    fn user_event(&mut self) -> Vec<Envelope> {
        let index = self.rng.below(self.users.len());
        let count = if self.rng.percent(25) { 2 } else { 1 };
        let mut made = Vec::new();
        for _ in 0..count {
            let (id, version) = self.users[index];
            let name = *self.rng.pick(&NAMES);
            let payload = user_events::UserUpdated {
                email: format!("{}@example.com", name.to_lowercase()),
                name: name.to_owned(),
                active: true,
            };
            let kind = if version == 0 {
                user_events::USER_REGISTERED
            } else {
                user_events::USER_UPDATED
            };
            self.names.insert(id, payload.name.clone());
            made.push(self.envelope(kind, id, version + 1, payload));
            self.users[index].1 += 1;
        }
        made.reverse();
        made
    }

    fn product_event(&mut self) -> Vec<Envelope> {
        let index = self.rng.below(self.products.len());
        let count = if self.rng.percent(25) { 2 } else { 1 };
        let mut made = Vec::new();
        for _ in 0..count {
            let (id, version) = self.products[index];
            let name = format!("Lamp {}", self.rng.pick(&NAMES));
            let (kind, payload) = product_payload(version == 0, &name);
            self.names.insert(id, name);
            made.push(self.envelope(kind, id, version + 1, payload));
            self.products[index].1 += 1;
        }
        made.reverse();
        made
    }

    fn order_created(&mut self) -> Envelope {
        let id = self.rng.uuid();
        let user = self.rng.pick(&self.users).0;
        let mut products: Vec<Uuid> = self.products.iter().map(|p| p.0).collect();
        products.truncate(1 + self.rng.below(products.len()));
        let items: Vec<order_events::OrderLine> = products
            .iter()
            .map(|&product| {
                order_events::OrderLine::new(
                    ProductId::from(product),
                    format!("Lamp as placed {}", self.rng.pick(&NAMES)),
                    1 + self.rng.below(3) as i64,
                    Money::parse("12.50").expect("a price"),
                )
                .expect("a line")
            })
            .collect();
        let placed_as = *self.rng.pick(&NAMES);
        let payload = order_events::OrderCreated {
            user_id: UserId::from(user),
            user_name: format!("{placed_as} as placed"),
            user_email: format!("{}@placed.example.com", placed_as.to_lowercase()),
            items,
            total: Money::parse("25.00").expect("a total"),
        };
        self.orders.push(Order {
            id,
            status: OrderStatus::Pending,
            version: 1,
            user,
            placed_as: payload.user_name.clone(),
            items: (payload.items.iter())
                .map(|i| (i.product_id.as_uuid(), i.product_name.clone()))
                .collect(),
        });
        self.envelope(order_events::ORDER_CREATED, id, 1, payload)
    }

    /// A transition the status machine allows, if the order has one left.
    fn order_changed(&mut self, index: usize) -> Option<Envelope> {
        use OrderStatus::*;
        let order = &self.orders[index];
        let (id, version, from) = (order.id, order.version + 1, order.status);
        let cancel = self.rng.percent(30);
        let (to, event) = match (from, cancel) {
            (Pending | Confirmed | Shipped, true) => {
                let payload = order_events::OrderCancelled {
                    reason: (*self.rng.pick(&REASONS)).to_owned(),
                    previous_status: from,
                };
                let event = self.envelope(order_events::ORDER_CANCELLED, id, version, payload);
                (Cancelled, event)
            }
            (Pending, false) => {
                let payload = order_events::OrderConfirmed {
                    payment_id: PaymentId::from(self.rng.uuid()),
                    amount: Money::parse("25.00").expect("an amount"),
                };
                let event = self.envelope(order_events::ORDER_CONFIRMED, id, version, payload);
                (Confirmed, event)
            }
            (Confirmed, false) => {
                let payload = order_events::StatusChanged {};
                let event = self.envelope(order_events::ORDER_SHIPPED, id, version, payload);
                (Shipped, event)
            }
            (Shipped, false) => {
                let payload = order_events::StatusChanged {};
                let event = self.envelope(order_events::ORDER_DELIVERED, id, version, payload);
                (Delivered, event)
            }
            (Delivered | Cancelled, _) => return None,
        };
        self.orders[index].status = to;
        self.orders[index].version = version;
        Some(event)
    }

    /// Some 20 to 60 deliveries. An order's creation is delivered before its status changes
    /// (they share a log); anything already delivered may come again later.
    fn generate(mut self) -> (Vec<Delivery>, String) {
        let steps = 20 + self.rng.below(40);
        for _ in 0..steps {
            match self.rng.below(10) {
                0 | 1 => {
                    for event in self.user_event() {
                        self.deliver("users", event);
                    }
                }
                2 | 3 => {
                    for event in self.product_event() {
                        self.deliver("products", event);
                    }
                }
                4 | 5 if self.orders.len() < 6 => {
                    let event = self.order_created();
                    self.deliver("orders", event);
                }
                4..=7 if !self.orders.is_empty() => {
                    let index = self.rng.below(self.orders.len());
                    let first = self.order_changed(index);
                    // Now and then two changes, the newer delivered first.
                    let second = if self.rng.percent(20) {
                        self.order_changed(index)
                    } else {
                        None
                    };
                    for event in second.into_iter().chain(first) {
                        self.deliver("orders", event);
                    }
                }
                _ if !self.delivered.is_empty() => {
                    let again = self.rng.pick(&self.delivered).clone();
                    self.delivered.push(again);
                }
                _ => {}
            }
        }
        let expected = self.expected();
        (self.delivered, expected)
    }

    /// What the read model must say, from the history itself: each order's newest status
    /// and version, its user's newest name and its products' newest names (or the names it
    /// was placed with), as [`MODEL`] dumps it.
    fn expected(&self) -> String {
        let mut orders: Vec<&Order> = self.orders.iter().collect();
        orders.sort_by_key(|o| o.id);
        let name = |id: &Uuid, placed: &str| self.names.get(id).cloned().unwrap_or(placed.into());
        let rows: Vec<serde_json::Value> = orders
            .iter()
            .map(|o| {
                let items: Vec<String> = (o.items.iter())
                    .map(|(product, placed)| name(product, placed))
                    .collect();
                serde_json::json!([
                    o.id,
                    o.status.as_str(),
                    o.version,
                    name(&o.user, &o.placed_as),
                    items
                ])
            })
            .collect();
        serde_json::Value::from(rows).to_string()
    }
}

/// Random batches, each from one source as the event log delivers them.
fn split(rng: &mut Rng, deliveries: &[Delivery]) -> Vec<Vec<Delivery>> {
    let mut batches: Vec<Vec<Delivery>> = Vec::new();
    for delivery in deliveries {
        match batches.last_mut() {
            Some(batch) if batch[0].source == delivery.source && !rng.percent(20) => {
                batch.push(delivery.clone());
            }
            _ => batches.push(vec![delivery.clone()]),
        }
    }
    batches
}

#[derive(QueryableByName)]
struct Dump {
    #[diesel(sql_type = Text)]
    state: String,
}

/// Every row of the read model's tables, as JSON text in key order (of the generations,
/// not their timestamps, which each database sets itself).
const DUMP: &str = "SELECT \
       (SELECT coalesce(json_agg(o ORDER BY generation, id), '[]') FROM orders_read.orders o)::text \
       || (SELECT coalesce(json_agg(i ORDER BY generation, order_id, line), '[]') FROM orders_read.order_items i)::text \
       || (SELECT coalesce(json_agg(u ORDER BY generation, id), '[]') FROM orders_read.users u)::text \
       || (SELECT coalesce(json_agg(p ORDER BY generation, id), '[]') FROM orders_read.products p)::text \
       || (SELECT coalesce(json_agg(c ORDER BY generation, user_id, status), '[]') FROM orders_read.order_counts c)::text \
       || (SELECT json_agg(json_build_array(id, state) ORDER BY id) FROM orders_read.generations)::text \
       AS state";

/// Per order of the live generation: id, status, version, user name, item names in line
/// order, as the queries name them (the latest name seen, else the one placed with).
const MODEL: &str = "SELECT coalesce(json_agg(json_build_array(o.id, o.status, o.version, \
       coalesce(u.name, o.user_name), \
       (SELECT json_agg(coalesce(p.name, i.product_name) ORDER BY i.line) FROM orders_read.order_items i \
        LEFT JOIN orders_read.products p ON p.generation = i.generation AND p.id = i.product_id \
        WHERE i.generation = o.generation AND i.order_id = o.id)) ORDER BY o.id), '[]')::text AS state \
     FROM orders_read.orders o \
     LEFT JOIN orders_read.users u ON u.generation = o.generation AND u.id = o.user_id";

const RESET: &str = "TRUNCATE orders_read.orders, orders_read.order_items, orders_read.users, \
       orders_read.products, orders_read.order_counts";

async fn dump(conn: &mut AsyncPgConnection) -> String {
    let dump: Dump = diesel::sql_query(DUMP).get_result(conn).await.unwrap();
    dump.state
}

/// The read model as [`History::expected`] states it (normalized through serde_json).
async fn model(conn: &mut AsyncPgConnection) -> String {
    let dump: Dump = diesel::sql_query(MODEL).get_result(conn).await.unwrap();
    let value: serde_json::Value = serde_json::from_str(&dump.state).unwrap();
    value.to_string()
}

async fn reset(conn: &mut AsyncPgConnection) {
    diesel::sql_query(RESET).execute(conn).await.unwrap();
}

async fn read_model() -> Pool {
    let database = kernel::testing::database(&[orders_read::SCHEMA]).await;
    db::pool(&database.url, &orders_read::SCHEMA, Default::default()).unwrap()
}

/// Applies each batch in a transaction of its own, as a subscription does.
async fn apply(
    conn: &mut AsyncPgConnection,
    projection: &OrderProjection,
    batches: &[Vec<Delivery>],
) -> anyhow::Result<()> {
    for batch in batches {
        let events: Vec<&Envelope> = batch.iter().map(|d| &d.event).collect();
        db::transaction(conn, async |conn| {
            if let [single] = events.as_slice() {
                projection.apply(conn, batch[0].source, single).await
            } else {
                anyhow::ensure!(
                    projection
                        .apply_batch(conn, batch[0].source, &events)
                        .await?,
                    "the projection declined a batch"
                );
                Ok(())
            }
        })
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_single_events_build_the_same_read_model() {
    // One database applies each history one event at a time, the others in random batch
    // splits of it, all at once.
    let mut connections = Vec::new();
    for _ in 0..=SPLITS {
        connections.push(db::connect(&read_model().await).await.unwrap());
    }
    let projection = OrderProjection::live();
    let seeds: Vec<u64> = match std::env::var("PROJECTION_SEED") {
        Ok(seed) => vec![seed.parse().expect("PROJECTION_SEED is a number")],
        Err(_) => {
            let base = Utc::now().timestamp_micros() as u64;
            (0..CASES)
                .map(|case| base.wrapping_add(case * 7919))
                .collect()
        }
    };
    let (mut orders_seen, mut multi_event_batches) = (0, 0);
    for seed in seeds {
        let (deliveries, truth) = History::new(seed).generate();
        let mut rng = Rng(seed ^ 0x5EED);
        let mut plans: Vec<Vec<Vec<Delivery>>> =
            vec![deliveries.iter().map(|d| vec![d.clone()]).collect()];
        plans.extend((0..SPLITS).map(|_| split(&mut rng, &deliveries)));
        multi_event_batches += plans.iter().flatten().filter(|b| b.len() > 1).count();
        let runs = connections.iter_mut().zip(&plans).map(|(conn, batches)| {
            let projection = &projection;
            async move {
                reset(conn).await;
                apply(conn, projection, batches).await?;
                let miscounted = crate::miscounted(conn).await;
                anyhow::ensure!(miscounted == "[]", "list totals miscounted: {miscounted}");
                anyhow::Ok((dump(conn).await, model(conn).await))
            }
        });
        let mut models = futures_util::future::join_all(runs).await.into_iter();
        let (expected, one_by_one) = models
            .next()
            .expect("one run per plan")
            .unwrap_or_else(|e| panic!("seed {seed}: one by one: {e:#}"));
        assert!(
            one_by_one == truth,
            "seed {seed}: one by one, the read model is not what the history says\n\
             history:    {truth}\nread model: {one_by_one}"
        );
        orders_seen += expected.matches("\"item_count\"").count();
        for (attempt, (got, batches)) in models.zip(&plans[1..]).enumerate() {
            let (got, _) =
                got.unwrap_or_else(|e| panic!("seed {seed}, split {attempt}: batched: {e:#}"));
            assert!(
                got == expected,
                "seed {seed}, split {attempt} ({} batches of {:?}): the read models differ\n\
                 one by one: {expected}\nbatched:    {got}",
                batches.len(),
                batches.iter().map(Vec::len).collect::<Vec<_>>(),
            );
        }
    }
    // A run that builds no orders or never batches proves nothing.
    assert!(orders_seen > 0 && multi_event_batches > 0);
}
