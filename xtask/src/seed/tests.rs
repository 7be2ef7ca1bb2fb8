//! The bulk seed against the API seed: the same data set made both ways, on two databases
//! each served by the real app, must leave every module's tables and logs the same, row
//! for row, once ids, times and hashes are put aside. The bulk seed's database must then
//! serve like any other: a bulk user logs in, a rebuilt read model is the one the seed
//! wrote, commands on bulk orders go through, and every invariant holds.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_postgres::Client;

use super::sql::{SUBSCRIPTIONS, behind};
use super::*;
use crate::db::{self, DbUrl};
use crate::load::{self, Api};

/// Every order of the lifecycle three times over.
const SIZES: (usize, usize, usize) = (12, 5, 60);
const ADMIN_TOKEN: &str = "seed-test-admin-token";

/// The module schemas whose tables are compared; the tables left out hold keys, tokens
/// and migrations, which no seed makes.
const SCHEMAS: [&str; 6] = [
    "users",
    "products",
    "orders",
    "payments",
    "gateway",
    "orders_read",
];
/// The read model's tables, which a rebuild makes again.
const READ_MODEL: [&str; 5] = [
    "orders_read.orders",
    "orders_read.order_items",
    "orders_read.users",
    "orders_read.products",
    "orders_read.order_counts",
];
const SKIPPED: [&str; 3] = [
    "__diesel_schema_migrations",
    "signing_keys",
    "refresh_tokens",
];

struct App {
    api: Api,
    url: DbUrl,
    _db: kernel::testing::TestDatabase,
    handle: actix_web::dev::ServerHandle,
}

async fn app() -> App {
    let schemas: Vec<_> = emporium::SCHEMAS
        .iter()
        .chain(emporium::READ_SCHEMAS.iter())
        .chain(emporium::SIMULATED_SCHEMAS.iter())
        .copied()
        .collect();
    let db = kernel::testing::database(&schemas).await;
    let mut config = emporium::Config::for_database(&db.url);
    config.admin_token = Some(ADMIN_TOKEN.to_owned());
    config.max_pending_orders = 1_000;
    let running = emporium::start_with(&config, emporium::Hooks::default())
        .await
        .expect("start emporium");
    let api = Api::new(&running.address.to_string(), ADMIN_TOKEN).unwrap();
    let handle = running.handle.clone();
    tokio::spawn(running.wait());
    api.log_in_staff().await.expect("log the staff member in");
    App {
        api,
        url: DbUrl::parse(&db.url).unwrap(),
        _db: db,
        handle,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bulk_seed_writes_what_the_api_writes_and_serves_like_it() {
    let by_api = app().await;
    let (api_catalog, _) = via_api(&by_api.api, SIZES, 4).await.unwrap();
    let by_sql = app().await;
    let (sql_catalog, seeded) = via_sql(&by_sql.api, &by_sql.url, SIZES).await.unwrap();
    assert_eq!(seeded.iter().map(|s| s.count).sum::<usize>(), 12 + 5 + 60);
    assert_eq!(sql_catalog.orders.len(), SIZES.2);

    let api_client = db::connect(&by_api.url).await.unwrap();
    let sql_client = db::connect(&by_sql.url).await.unwrap();
    settled(&api_client).await;
    settled(&sql_client).await;
    let expected = digest(&api_client, &api_catalog).await;
    let actual = digest(&sql_client, &sql_catalog).await;
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        actual.keys().collect::<Vec<_>>()
    );
    let differences: Vec<String> = expected
        .iter()
        .filter(|(table, rows)| actual[*table] != **rows)
        .map(|(table, rows)| difference(table, rows, &actual[table]))
        .collect();
    assert!(differences.is_empty(), "{}", differences.join("\n\n"));
    assert!(
        expected["orders.events"].len() > SIZES.2 && expected["payments.events"].len() > 10,
        "the comparison saw the logs"
    );
    by_api.handle.stop(false).await;

    // A bulk user logs in with the seeded password.
    let login =
        json!({"grant_type": "password", "email": user_email(3), "password": USER_PASSWORD});
    let (status, _) = by_sql.api.post("/auth/token", &login).await.unwrap();
    assert_eq!(status, 200);

    // The projection, replaying the bulk logs, rebuilds the read model the seed wrote.
    let read_model = |digest: &BTreeMap<String, Vec<String>>| -> Vec<Vec<String>> {
        READ_MODEL
            .iter()
            .map(|t| {
                digest[*t]
                    .iter()
                    .map(|r| r.replace("\"generation\":1", "\"generation\":2"))
                    .collect()
            })
            .collect()
    };
    load::start_rebuild(&by_sql.api).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !load::rebuild_done(&by_sql.api).await.unwrap() || retiring(&sql_client).await {
        assert!(Instant::now() < deadline, "the rebuild did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rebuilt = digest(&sql_client, &sql_catalog).await;
    let rebuilt: Vec<Vec<String>> = READ_MODEL.iter().map(|t| rebuilt[*t].clone()).collect();
    assert_eq!(rebuilt, read_model(&actual));

    // Commands on bulk orders: confirm a pending one, cancel a confirmed one (a refund
    // through the gateway), ship another.
    let orders = &sql_catalog.orders;
    for (order, command, body) in [
        (&orders[0], "confirm", json!({"payment_token": "tok_visa"})),
        (&orders[10], "cancel", json!({"reason": "seed test"})),
        (&orders[11], "ship", json!({})),
    ] {
        let path = format!("/commands/orders/{order}/{command}");
        let (status, answer) = by_sql.api.post(&path, &body).await.unwrap();
        assert_eq!(status, 202, "{path}: {answer}");
    }
    settled(&sql_client).await;
    let refunded: i64 = sql_client
        .query_one(
            "SELECT count(*) FROM gateway.ledger g JOIN payments.payments p ON p.id = g.key \
             WHERE p.order_id = $1::text::uuid AND g.outcome = 'refunded' AND p.status = 'refunded'",
            &[&orders[10]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        refunded, 1,
        "the cancel of a bulk order refunded its payment"
    );
    for (what, check) in invariants::checks() {
        let n: i64 = sql_client.query_one(&check, &[]).await.unwrap().get(0);
        assert_eq!(n, 0, "invariant broken after the bulk seed: {what}");
    }
    by_sql.handle.stop(false).await;
}

/// Whether the read model still holds rows of a generation other than the live one.
async fn retiring(client: &Client) -> bool {
    let sql = "SELECT EXISTS (SELECT 1 FROM orders_read.orders o JOIN orders_read.generations g \
               ON g.id = o.generation WHERE g.state <> 'live')";
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Waits until every subscriber has applied every event and no payment is unsettled.
async fn settled(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut busy = client
            .query_one(&invariants::unsettled_payments(), &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
            > 0;
        for (schema, subscriber, sources) in SUBSCRIPTIONS {
            for source in sources {
                let row = client
                    .query_one(&behind(schema, subscriber, source), &[])
                    .await
                    .unwrap();
                busy |= row.get::<_, bool>(0);
            }
        }
        if !busy {
            return;
        }
        assert!(Instant::now() < deadline, "background work did not settle");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every compared table's rows, as canonical JSON, sorted: ids replaced by what they
/// name (a user's email, a product's name, an order's index in the data set, the payment
/// of an order), times, hashes and other ids by placeholders, and log positions left out.
async fn digest(client: &Client, catalog: &Catalog) -> BTreeMap<String, Vec<String>> {
    let mut labels: HashMap<String, String> = HashMap::new();
    for row in client
        .query("SELECT id::text, email FROM users.users", &[])
        .await
        .unwrap()
    {
        labels.insert(row.get(0), format!("user {}", row.get::<_, String>(1)));
    }
    for row in client
        .query("SELECT id::text, name FROM products.products", &[])
        .await
        .unwrap()
    {
        labels.insert(row.get(0), format!("product {}", row.get::<_, String>(1)));
    }
    for (i, order) in catalog.orders.iter().enumerate() {
        labels.insert(order.clone(), format!("order {i}"));
    }
    for row in client
        .query(
            "SELECT id::text, order_id::text, gateway_reference FROM payments.payments",
            &[],
        )
        .await
        .unwrap()
    {
        let label = format!("payment of {}", labels[&row.get::<_, String>(1)]);
        if let Some(reference) = row.get::<_, Option<String>>(2) {
            labels.insert(reference, format!("reference of {label}"));
        }
        labels.insert(row.get(0), label);
    }
    let tables = client
        .query(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables \
             WHERE table_schema = ANY ($1) AND NOT table_name = ANY ($2) ORDER BY 1",
            &[&SCHEMAS.to_vec(), &SKIPPED.to_vec()],
        )
        .await
        .unwrap();
    let mut digest = BTreeMap::new();
    for table in tables {
        let table: String = table.get(0);
        let rows = client
            .query(&format!("SELECT to_jsonb(t)::text FROM {table} t"), &[])
            .await
            .unwrap();
        let mut rows: Vec<String> = rows
            .iter()
            .map(|row| {
                let mut value: Value = serde_json::from_str(row.get(0)).unwrap();
                // A refund is made by the saga as the cancel's actor or, when that try
                // does not finish in time, by the payments module's retry as the system:
                // through the API either may happen, so who is not compared.
                if value["event_type"] == "payment.refunded"
                    && let Some(fields) = value.as_object_mut()
                {
                    fields.remove("actor_kind");
                    fields.remove("actor_id");
                }
                canonical(&normalized(value, &labels))
            })
            .collect();
        rows.sort();
        digest.insert(table, rows);
    }
    digest
}

fn normalized(value: Value, labels: &HashMap<String, String>) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .filter(|(key, _)| !["xid", "seq"].contains(&key.as_str()))
                .map(|(key, value)| (key, normalized(value, labels)))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| normalized(v, labels)).collect())
        }
        Value::String(text) => Value::String(match labels.get(&text) {
            Some(label) => label.clone(),
            None if text.starts_with("$argon2") => "<password hash>".to_owned(),
            None if uuid_like(&text) => "<id>".to_owned(),
            None if time_like(&text) => "<time>".to_owned(),
            None => text,
        }),
        other => other,
    }
}

fn uuid_like(text: &str) -> bool {
    text.len() == 36 && text.chars().filter(|c| *c == '-').count() == 4
}

fn time_like(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.len() >= 19 && bytes[4] == b'-' && bytes[10] == b'T' && bytes[13] == b':'
}

/// JSON with every object's keys sorted, whatever serde_json's map keeps.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(fields) => {
            let sorted: BTreeMap<_, _> = fields.iter().collect();
            let parts: Vec<String> = sorted
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), canonical(v)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(canonical).collect::<Vec<_>>().join(",")
            )
        }
        other => other.to_string(),
    }
}

/// The rows of `table` only the API made, and those only the bulk seed made.
fn difference(table: &str, expected: &[String], actual: &[String]) -> String {
    let missing: Vec<_> = expected
        .iter()
        .filter(|r| !actual.contains(r))
        .take(3)
        .collect();
    let extra: Vec<_> = actual
        .iter()
        .filter(|r| !expected.contains(r))
        .take(3)
        .collect();
    format!(
        "{table}: {} rows by the API, {} in bulk\n  only by the API: {missing:#?}\n  only in bulk: {extra:#?}",
        expected.len(),
        actual.len()
    )
}
