//! The bulk seed: the rows and events [`super::via_api`] makes, written by set-based SQL
//! on one connection, in transactions of [`CHUNK`] orders.
//!
//! What it writes, per module, is what the API's commands write (`tests.rs` compares the
//! two row for row): users (their `user.registered`), products (`product.created`), orders
//! with their lines, `order.*` events and the read model's rows, the products module's
//! reservations and stock, payments with their `payment.*` events and the simulated
//! gateway's ledger. Each transaction also moves every subscriber's checkpoint past the
//! events it wrote, since their effects are written with them: the projection's rows, the
//! saga's stock commits and refunds.
//!
//! It runs against a server that is up (it migrated the database and keeps its signing
//! keys) but idle, and refuses to start a transaction while any subscriber is behind. Each
//! transaction first locks every event log against appends (`EXCLUSIVE`), so nothing is
//! appended beside it, and checks that every subscriber has applied every event before it.
//!
//! Differences from the API, all invisible to a client:
//! - every bulk user shares the password hash of user 0, who registers through the API
//!   (argon2 takes tens of milliseconds per hash by design; the salt is then shared);
//! - ids are version 7 UUIDs made in SQL from the row's time, and times are spread one
//!   millisecond apart per order, in the past;
//! - every event of one transaction has its `xid`.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use tokio_postgres::Client;

use super::{
    CANCEL_REASON, Catalog, OrderPlan, Seeded, lifecycle, product_body, user_body, user_email,
};
use crate::db::{self, DbUrl};
use crate::load::{Api, STAFF_EMAIL, caught_up, id};

/// Orders per transaction.
const CHUNK: usize = 20_000;

/// Each subscriber's schema, name, and the logs it reads; the bulk seed moves each of
/// these checkpoints past what it wrote.
pub(super) const SUBSCRIPTIONS: [(&str, &str, &[&str]); 2] = [
    (
        "orders_read",
        "orders_read",
        &["users", "products", "orders"],
    ),
    ("orders", "orders_saga", &["orders", "payments"]),
];
const LOGS: [&str; 4] = ["users", "products", "orders", "payments"];

/// The session's helpers: a v7 UUID from a time, and the tables a transaction fills from
/// the arrays Rust sends.
const SETUP: &str = r#"
CREATE FUNCTION pg_temp.uuid7(t timestamptz) RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM t) * 1000)::bigint), 12, '0') || '7'
            || substr(r, 2, 3) || substr(r, 17, 16))::uuid
    FROM replace(gen_random_uuid()::text, '-', '') AS r
$$;
CREATE TEMP TABLE seed_users (idx int PRIMARY KEY, id uuid NOT NULL, email text NOT NULL,
    name text NOT NULL, at timestamptz NOT NULL);
CREATE TEMP TABLE seed_products (idx int PRIMARY KEY, id uuid NOT NULL, name text NOT NULL,
    description text NOT NULL, price numeric(12, 2) NOT NULL, stock bigint NOT NULL,
    at timestamptz NOT NULL);
CREATE TEMP TABLE seed_plan (i bigint PRIMARY KEY, user_idx int NOT NULL, steps text[] NOT NULL);
CREATE TEMP TABLE seed_plan_lines (i bigint NOT NULL, line int NOT NULL, product_idx int NOT NULL,
    quantity bigint NOT NULL, PRIMARY KEY (i, line));
CREATE TEMP TABLE seed_settings (staff uuid NOT NULL, hash text NOT NULL, generation int NOT NULL,
    t0 timestamptz NOT NULL, cancel_reason text NOT NULL);
"#;

/// The settings: the staff member every command acts as, user 0's password hash, the live
/// read-model generation, and the time of the first bulk row.
const SETTINGS: &str = "INSERT INTO seed_settings \
     SELECT u.id, h.password_hash, g.id, now() - $3::float8 * interval '1 ms', $4 \
     FROM users.users u, users.users h, orders_read.generations g \
     WHERE u.email = $1 AND h.email = $2 AND g.state = 'live'";

const USERS: &str = "INSERT INTO seed_users (idx, id, email, name, at) \
     SELECT u.idx, pg_temp.uuid7(s.t0 + u.idx * interval '1 ms'), u.email, u.name, \
       s.t0 + u.idx * interval '1 ms' \
     FROM unnest($1::int[], $2::text[], $3::text[]) AS u(idx, email, name), seed_settings s";

/// Users (all but user 0, who is the API's), their events and the read model's copy.
const WRITE_USERS: &str = r#"
INSERT INTO users.users (id, email, name, active, created_at, updated_at, version, password_hash, roles)
SELECT u.id, u.email, u.name, true, u.at, u.at, 1, s.hash, '{}'
FROM seed_users u, seed_settings s WHERE u.idx > 0 ORDER BY u.idx;
INSERT INTO users.events (event_id, event_type, aggregate_id, aggregate_version, occurred_at,
    schema_version, payload, actor_kind, actor_id, correlation_id)
SELECT pg_temp.uuid7(u.at), 'user.registered', u.id, 1, u.at, 1,
    jsonb_build_object('name', u.name, 'email', u.email, 'active', true), 'user', NULL,
    pg_temp.uuid7(u.at)::text
FROM seed_users u WHERE u.idx > 0 ORDER BY u.idx;
INSERT INTO orders_read.users (generation, id, name, email, version)
SELECT s.generation, u.id, u.name, u.email, 1 FROM seed_users u, seed_settings s WHERE u.idx > 0;
"#;

const PRODUCTS: &str = "INSERT INTO seed_products (idx, id, name, description, price, stock, at) \
     SELECT p.idx, pg_temp.uuid7(s.t0 + ($1::int + p.idx) * interval '1 ms'), p.name, p.description, \
       p.price::numeric, p.stock, s.t0 + ($1::int + p.idx) * interval '1 ms' \
     FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::bigint[]) \
       AS p(idx, name, description, price, stock), seed_settings s";

const WRITE_PRODUCTS: &str = r#"
INSERT INTO products.products (id, name, description, price, stock, reserved, created_at, updated_at, version)
SELECT p.id, p.name, p.description, p.price, p.stock, 0, p.at, p.at, 1 FROM seed_products p ORDER BY p.idx;
INSERT INTO products.events (event_id, event_type, aggregate_id, aggregate_version, occurred_at,
    schema_version, payload, actor_kind, actor_id, correlation_id)
SELECT pg_temp.uuid7(p.at), 'product.created', p.id, 1, p.at, 1,
    jsonb_build_object('name', p.name, 'price', p.price::text, 'stock', p.stock,
        'description', p.description),
    'user', s.staff, pg_temp.uuid7(p.at)::text
FROM seed_products p, seed_settings s ORDER BY p.idx;
INSERT INTO orders_read.products (generation, id, name, version)
SELECT s.generation, p.id, p.name, 1 FROM seed_products p, seed_settings s;
"#;

const PLAN: &str = "INSERT INTO seed_plan (i, user_idx, steps) \
     SELECT p.i, p.user_idx, string_to_array(p.steps, ',') \
     FROM unnest($1::bigint[], $2::int[], $3::text[]) AS p(i, user_idx, steps)";

const PLAN_LINES: &str = "INSERT INTO seed_plan_lines (i, line, product_idx, quantity) \
     SELECT * FROM unnest($1::bigint[], $2::int[], $3::int[], $4::bigint[])";

/// One chunk of orders: every module's rows and events for the orders in `seed_plan`.
/// Order `i` is placed at `t0 + (users + products + i)` ms (users and products come
/// first), and each later command 0.1 ms after the one before.
const WRITE_ORDERS: &str = include_str!("orders.sql");

/// Seeds like [`super::via_api`], in bulk: user 0 through the API (for a real password
/// hash), everything else by SQL on `url`, the database the server behind `api` serves.
pub(crate) async fn via_sql(
    api: &Api,
    url: &DbUrl,
    (users, products, orders): (usize, usize, usize),
) -> Result<(Catalog, Vec<Seeded>)> {
    let mut report = Vec::new();
    let started = Instant::now();
    let first = id(&api.expect("/users", &user_body(0), 201).await?, "id")?;
    caught_up(api, std::time::Duration::from_secs(60)).await?;
    let mut client = db::connect(url).await?;
    client.batch_execute(SETUP).await.context("seed setup")?;
    let rows = (users + products + orders + 1_000) as f64;
    let set = client
        .execute(
            SETTINGS,
            &[&STAFF_EMAIL, &user_email(0), &rows, &CANCEL_REASON],
        )
        .await
        .context("seed settings")?;
    ensure!(set == 1, "the bulk seed needs the staff member and user 0");

    let (idx, emails, names): (Vec<i32>, Vec<String>, Vec<String>) = (0..users)
        .map(|i| {
            let body = user_body(i);
            (i as i32, text(&body["email"]), text(&body["name"]))
        })
        .collect();
    client
        .execute(USERS, &[&idx, &emails, &names])
        .await
        .context("seed users")?;
    client
        .execute(
            "UPDATE seed_users SET id = $1::text::uuid WHERE idx = 0",
            &[&first],
        )
        .await?;
    in_transaction(&mut client, WRITE_USERS, "users").await?;
    report.push(Seeded::bulk("users", users, started));

    let started = Instant::now();
    let bodies: Vec<_> = (0..products).map(product_body).collect();
    let idx: Vec<i32> = (0..products as i32).collect();
    let names: Vec<String> = bodies.iter().map(|b| text(&b["name"])).collect();
    let descriptions: Vec<String> = bodies.iter().map(|b| text(&b["description"])).collect();
    let prices: Vec<String> = bodies.iter().map(|b| text(&b["price"])).collect();
    let stock: Vec<i64> = bodies
        .iter()
        .map(|b| b["stock"].as_i64().unwrap_or(0))
        .collect();
    client
        .execute(
            PRODUCTS,
            &[
                &(users as i32),
                &idx,
                &names,
                &descriptions,
                &prices,
                &stock,
            ],
        )
        .await
        .context("seed products")?;
    in_transaction(&mut client, WRITE_PRODUCTS, "products").await?;
    report.push(Seeded::bulk("products", products, started));

    let started = Instant::now();
    let mut catalog = Catalog {
        users: ids(&client, "SELECT id::text FROM seed_users ORDER BY idx").await?,
        products: ids(&client, "SELECT id::text FROM seed_products ORDER BY idx").await?,
        orders: Vec::with_capacity(orders),
    };
    let offset = (users + products) as i64;
    for from in (0..orders).step_by(CHUNK) {
        let chunk = from..(from + CHUNK).min(orders);
        plan(&client, chunk.clone(), users, products).await?;
        let sql = WRITE_ORDERS.replace("{offset}", &offset.to_string());
        in_transaction(&mut client, &sql, "orders").await?;
        catalog
            .orders
            .extend(ids(&client, "SELECT id::text FROM seed_orders ORDER BY i").await?);
        eprintln!("xtask: bulk seed: {} of {orders} orders", chunk.end);
    }
    report.push(Seeded::bulk("orders", orders, started));
    Ok((catalog, report))
}

impl Seeded {
    fn bulk(what: &'static str, count: usize, started: Instant) -> Seeded {
        Seeded {
            what,
            count,
            requests: 0,
            elapsed: started.elapsed(),
        }
    }
}

/// Fills `seed_plan` and `seed_plan_lines` with orders `chunk`.
async fn plan(
    client: &Client,
    chunk: std::ops::Range<usize>,
    users: usize,
    products: usize,
) -> Result<()> {
    client
        .batch_execute("TRUNCATE seed_plan, seed_plan_lines")
        .await?;
    let (mut i, mut user, mut steps) = (Vec::new(), Vec::new(), Vec::new());
    let (mut line_i, mut line, mut product, mut quantity) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for n in chunk {
        let order = OrderPlan::of(n, users, products);
        i.push(n as i64);
        user.push(order.user as i32);
        steps.push(lifecycle(n).join(","));
        for (k, &(p, q)) in order.lines.iter().enumerate() {
            line_i.push(n as i64);
            line.push(k as i32);
            product.push(p as i32);
            quantity.push(q as i64);
        }
    }
    client
        .execute(PLAN, &[&i, &user, &steps])
        .await
        .context("seed plan")?;
    client
        .execute(PLAN_LINES, &[&line_i, &line, &product, &quantity])
        .await
        .context("seed plan lines")?;
    Ok(())
}

/// Runs `sql` in a transaction that first locks every log against appends and checks
/// that every subscriber is caught up, and last moves every subscriber past what `sql`
/// appended.
async fn in_transaction(client: &mut Client, sql: &str, what: &str) -> Result<()> {
    let tx = client.transaction().await?;
    let logs: Vec<String> = LOGS.iter().map(|l| format!("{l}.events")).collect();
    tx.batch_execute(&format!("LOCK TABLE {} IN EXCLUSIVE MODE", logs.join(", ")))
        .await?;
    for (schema, subscriber, sources) in SUBSCRIPTIONS {
        for source in sources {
            let behind: bool = tx
                .query_one(&behind(schema, subscriber, source), &[])
                .await?
                .get(0);
            ensure!(
                !behind,
                "the bulk seed needs every subscriber caught up, and {subscriber} has not \
                 applied every event of {source}: is the server busy?"
            );
        }
    }
    tx.batch_execute(sql)
        .await
        .with_context(|| format!("bulk seed of {what}"))?;
    for (schema, subscriber, sources) in SUBSCRIPTIONS {
        for source in sources {
            tx.batch_execute(&moved_past(schema, subscriber, source))
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Raw: whether `source`'s log holds an event past `subscriber`'s checkpoint.
pub(super) fn behind(schema: &str, subscriber: &str, source: &str) -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM {source}.events e WHERE (e.xid, e.seq) > \
           (SELECT coalesce(c.xid, '0'::xid8), coalesce(c.seq, 0) FROM (SELECT 1) AS one \
            LEFT JOIN {schema}.checkpoints c ON c.subscriber = '{subscriber}' \
              AND c.source = '{source}'))"
    )
}

/// Raw: `subscriber`'s checkpoint on `source` moved to the last event this transaction
/// appended there, with those events counted as applied.
fn moved_past(schema: &str, subscriber: &str, source: &str) -> String {
    format!(
        "INSERT INTO {schema}.checkpoints AS c (subscriber, source, xid, seq, applied) \
         SELECT '{subscriber}', '{source}', last.xid, last.seq, mine.n \
         FROM (SELECT xid, seq FROM {source}.events WHERE xid = pg_current_xact_id() \
               ORDER BY xid DESC, seq DESC LIMIT 1) AS last, \
              (SELECT count(*) AS n FROM {source}.events WHERE xid = pg_current_xact_id()) AS mine \
         ON CONFLICT (subscriber, source) DO UPDATE SET xid = excluded.xid, seq = excluded.seq, \
           applied = c.applied + excluded.applied, updated_at = now()"
    )
}

async fn ids(client: &Client, sql: &str) -> Result<Vec<String>> {
    let rows = client.query(sql, &[]).await.context("reading seeded ids")?;
    Ok(rows.iter().map(|row| row.get::<_, String>(0)).collect())
}

fn text(value: &serde_json::Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}
