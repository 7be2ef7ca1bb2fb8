//! The floor from the bench's side: `bench-floor` (`xtask/floor`), started beside emporium
//! on the same database once it is seeded, checked to answer what emporium answers, and
//! its schema dropped once the wrk phases are done, so the later phases run on the
//! database as before.
//!
//! The agreement check runs in every run, the smoke run included: the same orders, pages
//! and products, an unknown id, a placement of the same order (its answer, its row, its
//! lines, its outbox event's payload, its stock) and three refused placements, each answered
//! alike by both or the run fails. So a floor that answered something cheaper than
//! emporium would not be measured.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use chrono::DateTime;
use serde_json::{Value, json};

use super::phases::Bench;
use crate::db;
use crate::load::{Api, Rng};
use crate::seed::Catalog;
use crate::server::Server;
use crate::server::free_address;

/// The floor's binary and where it serves.
pub(super) struct Floor {
    pub(super) binary: PathBuf,
    pub(super) address: String,
    api: Api,
}

/// An id no row has (a v7 UUID of 1970).
const UNKNOWN: &str = "00000000-0000-7000-8000-000000000000";

impl Floor {
    pub(super) fn new(binary: PathBuf) -> Result<Floor> {
        let address = free_address()?;
        // The floor reads no token; the client sends none.
        let api = Api::new(&address, "")?;
        Ok(Floor {
            binary,
            address,
            api,
        })
    }

    /// Starts the floor (it copies the tables it writes first, so allow it minutes).
    pub(super) fn start(&self, bench: &Bench) -> Result<Server> {
        let env = bench.plan.floor_env();
        let at = (self.binary.as_path(), self.address.as_str());
        let (server, _) = bench.launch(at, &env, "floor.log", Duration::from_secs(900))?;
        Ok(server)
    }

    /// Fails unless the floor answers as emporium does (see the module's header).
    pub(super) fn check_agreement(&self, bench: &Bench, catalog: &Catalog) -> Result<()> {
        let checks = bench.block_on(agree(&bench.rig.api, &self.api, catalog, &bench.rig.url))?;
        eprintln!("xtask: the floor answers as emporium does ({checks} checks)");
        Ok(())
    }

    /// Drops the floor's schema (the server is stopped).
    pub(super) fn drop_schema(bench: &Bench) -> Result<()> {
        bench.block_on(async {
            db::connect(&bench.rig.url)
                .await?
                .batch_execute("DROP SCHEMA floor CASCADE")
                .await
                .context("dropping schema floor")
        })
    }
}

async fn agree(emporium: &Api, floor: &Api, catalog: &Catalog, url: &db::DbUrl) -> Result<usize> {
    let mut paths = vec![
        format!("/queries/orders/{UNKNOWN}"),
        format!("/products/{UNKNOWN}"),
        "/queries/orders/not-a-uuid".to_owned(),
    ];
    paths.extend(spread(&catalog.orders, 10).map(|id| format!("/queries/orders/{id}")));
    for id in spread(&catalog.users, 3) {
        paths.push(format!("/queries/orders?user_id={id}"));
        paths.push(format!("/queries/orders?user_id={id}&page=2&page_size=2"));
    }
    paths.extend(spread(&catalog.products, 3).map(|id| format!("/products/{id}")));
    for path in &paths {
        same_get(emporium, floor, path).await?;
    }
    let client = db::connect(url).await?;
    let order = catalog.new_order(&mut Rng::new(11));
    let placed = same_placement(emporium, floor, &client, &order).await?;
    let products = &catalog.products;
    let refused = [
        json!({"user_id": UNKNOWN, "items": order["items"]}),
        json!({"user_id": order["user_id"], "items": [{"product_id": UNKNOWN, "quantity": 1}]}),
        json!({"user_id": order["user_id"], "items": [{"product_id": products[0], "quantity": 0}]}),
    ];
    for body in &refused {
        let (e, f) = (
            emporium.post("/commands/orders", body).await?,
            floor.post("/commands/orders", body).await?,
        );
        if let Some(difference) = answers_differ(&e, &f) {
            bail!(
                "the floor answers POST /commands/orders {body} otherwise than emporium: {difference}"
            );
        }
    }
    Ok(paths.len() + placed + refused.len())
}

/// Up to `n` of `ids`, spread over them (the first, the last, between).
fn spread(ids: &[String], n: usize) -> impl Iterator<Item = &String> {
    let n = n.min(ids.len());
    (0..n).map(move |i| {
        &ids[if n == 1 {
            0
        } else {
            i * (ids.len() - 1) / (n - 1)
        }]
    })
}

/// `GET path` of both; a difference may be a change between the two reads (the saga
/// settling a seeded order, say), so it is read again before it fails the run.
async fn same_get(emporium: &Api, floor: &Api, path: &str) -> Result<()> {
    let mut difference = String::new();
    for _ in 0..3 {
        let (e, f) = (emporium.get(path).await?, floor.get(path).await?);
        match answers_differ(&e, &f) {
            None => return Ok(()),
            Some(d) => difference = d,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the floor answers GET {path} otherwise than emporium: {difference}")
}

/// Where two answers differ: the status; a problem's type, title, status and code (its
/// `detail` is prose); any other body as a whole (see [`differ`]).
fn answers_differ((es, e): &(u16, Value), (fs, f): &(u16, Value)) -> Option<String> {
    if es != fs {
        return Some(format!("status {es} (emporium) vs {fs} (floor)"));
    }
    if *es < 400 {
        return differ("", e, f);
    }
    ["type", "title", "status", "code"]
        .into_iter()
        .find_map(|key| differ(&format!(".{key}"), &e[key], &f[key]))
}

/// The first place where `a` (emporium's) and `b` (the floor's) differ, if any. Timestamps
/// are compared as instants: `...T08:25:00.120Z` and `...T08:25:00.12+00:00` agree.
fn differ(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys = |o: &serde_json::Map<String, Value>| o.keys().cloned().collect::<Vec<_>>();
            if keys(a) != keys(b) {
                return Some(format!("{path}: keys {:?} vs {:?}", keys(a), keys(b)));
            }
            a.iter()
                .find_map(|(key, value)| differ(&format!("{path}.{key}"), value, &b[key]))
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (a, b))| differ(&format!("{path}[{i}]"), a, b)),
        (Value::String(a), Value::String(b))
            if DateTime::parse_from_rfc3339(a)
                .ok()
                .zip(DateTime::parse_from_rfc3339(b).ok())
                .is_some_and(|(a, b)| a == b) =>
        {
            None
        }
        (a, b) if a == b => None,
        (a, b) => Some(format!("{path}: {a} vs {b}")),
    }
}

/// Places `order` in both; their answers, the rows written (the order, its lines, its
/// outbox event) and the floor's stock taken must agree. Answers the checks made.
async fn same_placement(
    emporium: &Api,
    floor: &Api,
    client: &tokio_postgres::Client,
    order: &Value,
) -> Result<usize> {
    let products: Vec<String> = order["items"]
        .as_array()
        .context("a new order without items")?
        .iter()
        .map(|item| item["product_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let before = floor_stock(client, &products).await?;
    let (e, f) = (
        emporium.post("/commands/orders", order).await?,
        floor.post("/commands/orders", order).await?,
    );
    ensure!(
        e.0 == 202 && f.0 == 202,
        "placing {order}: emporium answered {} {}, the floor {} {}",
        e.0,
        e.1,
        f.0,
        f.1
    );
    let ids = [&e.1, &f.1].map(|answer| answer["order_id"].as_str().unwrap_or_default().to_owned());
    let without_id = |answer: &Value| {
        let mut answer = answer.clone();
        answer["order_id"] = Value::Null;
        answer
    };
    let mut differences = vec![differ("answer", &without_id(&e.1), &without_id(&f.1))];
    for (what, sql) in [("order", PLACED_ORDER), ("outbox event", PLACED_EVENT)] {
        let mut found = Vec::new();
        for (schema, id) in [("orders", &ids[0]), ("floor", &ids[1])] {
            let row = client
                .query_one(&sql.replace("{schema}", schema), &[id])
                .await
                .with_context(|| format!("reading the {what} of {id} in schema {schema}"))?;
            found.push(serde_json::from_str::<Value>(row.get(0))?);
        }
        differences.push(differ(what, &found[0], &found[1]));
    }
    let after = floor_stock(client, &products).await?;
    for (i, item) in order["items"].as_array().into_iter().flatten().enumerate() {
        let taken = before[i] - after[i];
        if Some(taken) != item["quantity"].as_i64() {
            differences.push(Some(format!(
                "the floor took {taken} of product {}, not {}",
                products[i], item["quantity"]
            )));
        }
    }
    if let Some(difference) = differences.into_iter().flatten().next() {
        bail!("the floor places {order} otherwise than emporium: {difference}");
    }
    Ok(4)
}

/// A placed order's row and lines, as JSON (the statements name `{schema}`).
const PLACED_ORDER: &str = "SELECT json_build_object('status', o.status, 'total', o.total, \
     'version', o.version, 'user_id', o.user_id, 'lines', (SELECT json_agg(json_build_object( \
     'line', l.line, 'product_id', l.product_id, 'product_name', l.product_name, \
     'quantity', l.quantity, 'price', l.price) ORDER BY l.line) \
     FROM {schema}.order_lines l WHERE l.order_id = o.id))::text \
     FROM {schema}.orders o WHERE o.id = $1::text::uuid";
/// A placed order's `order.created`: its payload and the `schema_version` it is labelled with.
const PLACED_EVENT: &str = "SELECT json_build_object('schema_version', schema_version, \
     'payload', payload)::text FROM {schema}.events \
     WHERE aggregate_id = $1::text::uuid AND event_type = 'order.created'";

/// The floor's stock of `products`, in their order.
async fn floor_stock(client: &tokio_postgres::Client, products: &[String]) -> Result<Vec<i64>> {
    let mut stock = Vec::with_capacity(products.len());
    for id in products {
        let row = client
            .query_one(
                "SELECT stock FROM floor.products WHERE id = $1::text::uuid",
                &[id],
            )
            .await
            .with_context(|| format!("reading the floor's stock of {id}"))?;
        stock.push(row.get(0));
    }
    Ok(stock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_agree_on_what_they_say_not_how() {
        let order = |created: &str, total: &str| json!({"id": "a", "created_at": created, "total": total, "items": [{"quantity": 2}]});
        let emporium = order("2026-12-01T08:25:00.120Z", "19.99");
        for (floor, difference) in [
            (order("2026-12-01T08:25:00.12+00:00", "19.99"), None),
            (
                order("2026-12-01T08:25:00.121+00:00", "19.99"),
                Some(".created_at"),
            ),
            (order("2026-12-01T08:25:00.12Z", "19.9"), Some(".total")),
            (json!({"id": "a"}), Some(": keys")),
        ] {
            let found = differ("", &emporium, &floor);
            assert_eq!(found.is_some(), difference.is_some(), "{floor}: {found:?}");
            if let (Some(found), Some(difference)) = (&found, difference) {
                assert!(found.starts_with(difference), "{found}");
            }
        }
        let problem = |code: &str, detail: &str| {
            (
                404,
                json!({"type": "t", "title": "Not Found", "status": 404, "code": code, "detail": detail}),
            )
        };
        assert_eq!(
            answers_differ(
                &problem("order_not_found", "a"),
                &problem("order_not_found", "b")
            ),
            None
        );
        assert!(answers_differ(&problem("order_not_found", "a"), &problem("other", "a")).is_some());
        assert!(answers_differ(&(200, json!({})), &(404, json!({}))).is_some());
    }

    #[test]
    fn spreads_over_the_ids() {
        let ids: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        let picked: Vec<&str> = spread(&ids, 3).map(String::as_str).collect();
        assert_eq!(picked, ["0", "4", "9"]);
        assert_eq!(spread(&ids[..1], 3).count(), 1);
    }
}
