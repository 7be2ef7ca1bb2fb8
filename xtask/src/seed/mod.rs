//! The data set `cargo xtask bench` (and `soak`) runs against, made one of two ways that
//! must agree row for row (`tests.rs`):
//! - [`via_api`]: every user, product and order through HTTP, as clients would, each order
//!   then moved along its [`lifecycle`] by the commands a client would send;
//! - [`via_sql`] (`sql.rs`): the same rows and events of every module written by set-based
//!   SQL in bulk, in minutes for a million orders, where the API takes hours.
//!
//! Both draw each order from [`OrderPlan::draw`] with the same seed, so order `i` has the
//! same customer, lines and lifecycle either way.

mod sql;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::load::{Api, Rng, id};
pub(crate) use sql::via_sql;

/// What was seeded: ids, for the load scripts.
#[derive(Default)]
pub(crate) struct Catalog {
    pub(crate) users: Vec<String>,
    pub(crate) products: Vec<String>,
    pub(crate) orders: Vec<String>,
}

impl Catalog {
    /// The body of a new order (see [`OrderPlan::draw`]).
    pub(crate) fn new_order(&self, rng: &mut Rng) -> Value {
        let plan = OrderPlan::draw(rng, self.users.len(), self.products.len());
        let items: Vec<Value> = plan
            .lines
            .iter()
            .map(|&(product, quantity)| {
                json!({"product_id": self.products[product], "quantity": quantity})
            })
            .collect();
        json!({"user_id": self.users[plan.user], "items": items})
    }
}

/// One order of the data set, by index: its customer and its lines.
pub(crate) struct OrderPlan {
    pub(crate) user: usize,
    /// Product index and quantity, products distinct.
    pub(crate) lines: Vec<(usize, u64)>,
}

impl OrderPlan {
    /// A random customer, one to three distinct random products, one to three of each
    /// (products are seeded with ample stock).
    pub(crate) fn draw(rng: &mut Rng, users: usize, products: usize) -> OrderPlan {
        let count = 1 + rng.below(3).min(products - 1);
        let mut lines: Vec<(usize, u64)> = Vec::with_capacity(count);
        while lines.len() < count {
            let product = rng.below(products);
            if lines.iter().all(|&(p, _)| p != product) {
                lines.push((product, 1 + rng.below(3) as u64));
            }
        }
        OrderPlan {
            user: rng.below(users),
            lines,
        }
    }

    /// Order `i` of a data set of these sizes.
    pub(crate) fn of(i: usize, users: usize, products: usize) -> OrderPlan {
        OrderPlan::draw(&mut Rng::new(i as u64), users, products)
    }
}

/// How long one seeding step took, and how many requests it made (none in bulk).
pub(crate) struct Seeded {
    pub(crate) what: &'static str,
    pub(crate) count: usize,
    pub(crate) requests: u64,
    pub(crate) elapsed: Duration,
}

impl Seeded {
    pub(crate) fn per_second(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}

/// The email of seeded user `i`; every one has [`USER_PASSWORD`].
pub(crate) fn user_email(i: usize) -> String {
    format!("user{i}@bench.example")
}
pub(crate) const USER_PASSWORD: &str = "bench password";

/// The registration of seeded user `i`.
fn user_body(i: usize) -> Value {
    json!({"email": user_email(i), "name": format!("Bench User {i}"), "password": USER_PASSWORD})
}

/// The creation of seeded product `i`.
fn product_body(i: usize) -> Value {
    json!({
        "name": format!("Product {i}"),
        "description": "seeded by cargo xtask bench",
        "price": format!("{}.{:02}", 1 + i % 200, i % 100),
        "stock": 1_000_000_000,
    })
}

/// What happens to seeded order `i` after it is placed, by `i % 20`: 40 % stay pending,
/// 10 % are cancelled pending, 10 % confirmed, 5 % confirmed then cancelled (refunded),
/// 15 % shipped, 20 % delivered.
fn lifecycle(i: usize) -> &'static [&'static str] {
    match i % 20 {
        0..8 => &[],
        8..10 => &["cancel"],
        10..12 => &["confirm"],
        12 => &["confirm", "cancel"],
        13..16 => &["confirm", "ship"],
        _ => &["confirm", "ship", "deliver"],
    }
}

/// The body of an order command.
fn command_body(command: &str) -> Value {
    match command {
        "confirm" => json!({"payment_token": "tok_visa"}),
        "cancel" => json!({"reason": CANCEL_REASON}),
        _ => json!({}),
    }
}
const CANCEL_REASON: &str = "changed my mind";

/// Runs `work(i)` for every `i` in `0..count`, at most `concurrency` at a time; the
/// results in order of `i`. The first error stops everything.
async fn concurrently<T, F, Fut>(count: usize, concurrency: usize, work: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T>> + Send,
{
    let (work, next) = (Arc::new(work), Arc::new(AtomicUsize::new(0)));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (work, next) = (work.clone(), next.clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(done);
                }
                done.push((i, work(i).await?));
            }
        });
    }
    let mut results = Vec::with_capacity(count);
    while let Some(finished) = workers.join_next().await {
        results.extend(finished.context("a seeding task panicked")??);
    }
    results.sort_unstable_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, result)| result).collect())
}

/// Seeds `users` users, `products` products with ample stock, then `orders` orders over
/// them, each moved along its [`lifecycle`]. Everything goes through the API, so the event
/// log is the real one.
pub(crate) async fn via_api(
    api: &Api,
    (users, products, orders): (usize, usize, usize),
    concurrency: usize,
) -> Result<(Catalog, Vec<Seeded>)> {
    let mut catalog = Catalog::default();
    let mut report = Vec::new();

    let started = Instant::now();
    catalog.users = concurrently(users, concurrency, {
        let api = api.clone();
        move |i| {
            let api = api.clone();
            async move { id(&api.expect("/users", &user_body(i), 201).await?, "id") }
        }
    })
    .await?;
    report.push(Seeded {
        what: "users",
        count: users,
        requests: users as u64,
        elapsed: started.elapsed(),
    });

    let started = Instant::now();
    catalog.products = concurrently(products, concurrency, {
        let api = api.clone();
        move |i| {
            let api = api.clone();
            async move { id(&api.expect("/products", &product_body(i), 201).await?, "id") }
        }
    })
    .await?;
    report.push(Seeded {
        what: "products",
        count: products,
        requests: products as u64,
        elapsed: started.elapsed(),
    });

    let started = Instant::now();
    let requests = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(std::mem::take(&mut catalog));
    let placed = concurrently(orders, concurrency, {
        let (api, shared, requests) = (api.clone(), shared.clone(), requests.clone());
        move |i| {
            let (api, shared, requests) = (api.clone(), shared.clone(), requests.clone());
            async move {
                let body = shared.new_order(&mut Rng::new(i as u64));
                let order = id(
                    &api.expect("/commands/orders", &body, 202).await?,
                    "order_id",
                )?;
                let steps = lifecycle(i);
                for command in steps {
                    let path = format!("/commands/orders/{order}/{command}");
                    api.expect(&path, &command_body(command), 202).await?;
                }
                requests.fetch_add(1 + steps.len() as u64, Ordering::Relaxed);
                Ok(order)
            }
        }
    })
    .await?;
    catalog = Arc::try_unwrap(shared)
        .ok()
        .context("a seeding task outlived seeding")?;
    catalog.orders = placed;
    report.push(Seeded {
        what: "orders",
        count: orders,
        requests: requests.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    });
    Ok((catalog, report))
}
