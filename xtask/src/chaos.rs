//! `cargo xtask chaos`: crash the system while it works, then prove the contract's
//! invariants.
//!
//! It builds the release binary and starts a private Postgres of its own (`pgcluster`, in
//! `target/chaos/pg`, so it may crash it). Each round starts the server (some rounds two
//! processes at once), drives a concurrent mix of every command (orders placed, confirmed
//! with each gateway token, shipped, delivered, cancelled; restocks; renames) and, at a
//! random moment, `kill -9`s the servers, or crashes Postgres under them instead. Then it
//! starts what it killed, lets background work settle (projections caught up, interrupted
//! placements released) and checks invariants 1-4 (crate `invariants`) in the database,
//! and the same facts through the API. It prints each round and ends with
//! `N rounds, 0 violations`, or exits non-zero with the evidence.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use std::{fs, process::ExitCode};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::db::{self, DbUrl};
use crate::load::Rng;
use crate::server::{Server, target_directory};
use crate::{cargo, succeed};

const TOKEN: &str = "chaos-admin-token";
const USERS: usize = 6;
const STOCKS: [i64; 5] = [5, 20, 50, 100, 400];

/// What a round breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Crash {
    /// `kill -9` the server.
    Server,
    /// `kill -9` both of two servers.
    TwoServers,
    /// Crash Postgres under a running server (immediate shutdown), then start it again.
    Postgres,
}

pub(crate) fn run(root: &Path, rounds: u32, seed: Option<u64>) -> Result<ExitCode> {
    eprintln!("xtask: cargo build --release -p emporium");
    succeed(&mut cargo(root, &["build", "--release", "-p", "emporium"]))?;
    let binary = target_directory(root)?.join("release").join("emporium");
    let work = root.join("target").join("chaos");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let postgres = pgcluster::Cluster::new(work.join("pg"))?;
    let port = postgres.start()?;
    let url = db::cluster_url(port, "emporium_chaos");
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1
    });
    println!("chaos: seed {seed}, {rounds} rounds, database {url}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let chaos = Chaos {
        binary,
        work,
        url,
        postgres,
        rng: Rng::new(seed),
    };
    let result = runtime.block_on(chaos.rounds(rounds));
    match result {
        Ok(violations) if violations.is_empty() => {
            println!("{rounds} rounds, 0 violations");
            Ok(ExitCode::SUCCESS)
        }
        Ok(violations) => {
            println!(
                "{rounds} rounds, {} violations (seed {seed}):",
                violations.len()
            );
            for violation in violations {
                println!("  {violation}");
            }
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error.context(format!("chaos harness failed (seed {seed})"))),
    }
}

struct Chaos {
    binary: PathBuf,
    work: PathBuf,
    url: DbUrl,
    postgres: pgcluster::Cluster,
    rng: Rng,
}

/// The shop the load works on: ids known to the drivers.
#[derive(Default)]
struct Shop {
    users: Vec<String>,
    products: Vec<String>,
    orders: Mutex<Vec<String>>,
}

impl Chaos {
    async fn rounds(mut self, rounds: u32) -> Result<Vec<String>> {
        let shop = Arc::new(self.seed().await?);
        let mut violations = Vec::new();
        for round in 1..=rounds {
            // Every kind within any three consecutive rounds.
            let crash = match round % 3 {
                1 => Crash::Server,
                2 => Crash::TwoServers,
                _ => Crash::Postgres,
            };
            let found = self.round(round, crash, &shop).await?;
            let verdict = if found.is_empty() {
                "invariants hold".to_owned()
            } else {
                format!("{} VIOLATIONS", found.len())
            };
            println!("round {round}/{rounds}: {verdict}");
            violations.extend(found.into_iter().map(|v| format!("round {round}: {v}")));
            if !violations.is_empty() {
                break;
            }
        }
        let _ = self.postgres.remove();
        Ok(violations)
    }

    fn start(&self, name: &str) -> Result<(Server, String)> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let address = format!("127.0.0.1:{port}");
        let env = [
            ("ADMIN_TOKEN", TOKEN),
            ("PLACEMENT_TIMEOUT", "2s"),
            ("HTTP_WORKERS", "2"),
            ("DB_POOL_SIZE", "4"),
            ("RUST_LOG", "warn"),
        ];
        let log = self.work.join(format!("{name}.log"));
        let mut server = Server::start(&self.binary, &address, &self.url, &env, &log)?;
        server.wait_until_ready(&address, Duration::from_secs(60))?;
        Ok((server, format!("http://{address}")))
    }

    /// Users and products, through the API of a first server.
    async fn seed(&mut self) -> Result<Shop> {
        let (server, base) = self.start("seed")?;
        let http = reqwest::Client::new();
        let mut shop = Shop::default();
        for i in 0..USERS {
            let user = post(
                &http,
                &base,
                "/users",
                json!({"email": format!("chaos{i}@example.com"), "name": format!("Chaos {i}"), "password": "chaos password"}),
            )
            .await?;
            shop.users.push(id(&user.1, "id")?);
        }
        for (i, stock) in STOCKS.into_iter().enumerate() {
            let body = json!({"name": format!("Item {i}"), "price": format!("{}.{:02}", i + 1, i * 7 % 100), "stock": stock});
            let product = post(&http, &base, "/products", body).await?;
            shop.products.push(id(&product.1, "id")?);
        }
        drop(server);
        Ok(shop)
    }

    async fn round(&mut self, round: u32, crash: Crash, shop: &Arc<Shop>) -> Result<Vec<String>> {
        let count = if crash == Crash::TwoServers { 2 } else { 1 };
        let mut servers = Vec::new();
        for i in 0..count {
            servers.push(self.start(&format!("round{round}-server{i}"))?);
        }
        let bases: Vec<String> = servers.iter().map(|(_, base)| base.clone()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let drivers: Vec<_> = (0..6)
            .map(|i| {
                let counts = (sent.clone(), failed.clone());
                let (shop, stop, base) =
                    (shop.clone(), stop.clone(), bases[i % bases.len()].clone());
                let rng = Rng::new(self.rng.next());
                tokio::spawn(drive(base, shop, rng, stop, counts))
            })
            .collect();
        let before_crash = Duration::from_millis(500 + self.rng.next() % 2500);
        tokio::time::sleep(before_crash).await;
        let what = match crash {
            Crash::Server | Crash::TwoServers => {
                for (server, _) in servers.drain(..) {
                    server.kill();
                }
                format!("killed {count} server(s) with -9")
            }
            Crash::Postgres => {
                self.postgres.crash()?;
                tokio::time::sleep(Duration::from_millis(300 + self.rng.next() % 700)).await;
                self.postgres.start()?;
                "crashed and restarted Postgres under the server".to_owned()
            }
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::SeqCst);
        for driver in drivers {
            let _ = driver.await;
        }
        println!(
            "round {round}: {what} after {before_crash:?}; {} requests, {} failed (connection lost, 503, or a 5xx bug)",
            sent.load(Ordering::SeqCst),
            failed.load(Ordering::SeqCst)
        );
        if servers.is_empty() {
            servers.push(self.start(&format!("round{round}-restarted"))?);
        }
        let base = servers[0].1.clone();
        let found = settle_and_check(&self.url, &base, shop).await?;
        drop(servers);
        Ok(found)
    }
}

/// One load driver: random commands until told to stop. Failures are expected (a server
/// dies under it); they are counted, not fatal.
async fn drive(
    base: String,
    shop: Arc<Shop>,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
    (sent, failed): (Arc<AtomicU64>, Arc<AtomicU64>),
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    while !stop.load(Ordering::SeqCst) {
        sent.fetch_add(1, Ordering::Relaxed);
        let pick = rng.next() % 100;
        let orders_known = shop.orders.lock().await.len();
        let result = if pick < 35 || orders_known == 0 {
            let user = &shop.users[rng.below(shop.users.len())];
            let (a, b) = (
                rng.below(shop.products.len()),
                rng.below(shop.products.len()),
            );
            let mut items =
                vec![json!({"product_id": shop.products[a], "quantity": 1 + rng.below(3)})];
            if a != b && rng.next().is_multiple_of(2) {
                items.push(json!({"product_id": shop.products[b], "quantity": 1 + rng.below(2)}));
            }
            let placed = post(
                &http,
                &base,
                "/commands/orders",
                json!({"user_id": user, "items": items}),
            )
            .await;
            if let Ok((202, body)) = &placed
                && let Ok(order) = id(body, "order_id")
            {
                shop.orders.lock().await.push(order);
            }
            placed.map(|_| ())
        } else if pick < 92 {
            let order = {
                let orders = shop.orders.lock().await;
                orders[rng.below(orders.len())].clone()
            };
            let (command, body) = match pick {
                35..=56 => {
                    let tokens = [
                        "tok_visa",
                        "tok_visa",
                        "tok_visa",
                        "tok_declined",
                        "tok_gateway_error",
                    ];
                    (
                        "confirm",
                        json!({"payment_token": tokens[rng.below(tokens.len())]}),
                    )
                }
                57..=71 => ("ship", json!({})),
                72..=80 => ("deliver", json!({})),
                _ => ("cancel", json!({"reason": "chaos"})),
            };
            post(
                &http,
                &base,
                &format!("/commands/orders/{order}/{command}"),
                body,
            )
            .await
            .map(|_| ())
        } else if pick < 96 {
            let product = &shop.products[rng.below(shop.products.len())];
            post(
                &http,
                &base,
                &format!("/products/{product}/restock"),
                json!({"quantity": 1 + rng.below(5)}),
            )
            .await
            .map(|_| ())
        } else {
            let user = &shop.users[rng.below(shop.users.len())];
            let url = format!("{base}/users/{user}");
            http.patch(url)
                .json(&json!({"name": format!("Renamed {}", rng.next() % 1000)}))
                .send()
                .await
                .map(|_| ())
                .map_err(Into::into)
        };
        if result.is_err() {
            failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until the projections have caught up and the invariants hold (or the time is
/// up), then checks them once more, in the database and through the API.
async fn settle_and_check(url: &DbUrl, base: &str, shop: &Shop) -> Result<Vec<String>> {
    let client = db::connect(url).await.context("connecting for checks")?;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = violations(&client).await?;
        let lag = lag(&http, base).await.unwrap_or(i64::MAX);
        if (found.is_empty() && lag == 0) || Instant::now() > deadline {
            let mut found = found;
            if lag != 0 {
                found.push(format!("projections still lag by {lag} events after 60 s"));
            }
            if found.is_empty() {
                found.extend(api_agrees(&client, &http, base, shop).await?);
            }
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every invariant of the contract, each violation with its count.
async fn violations(client: &tokio_postgres::Client) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for (name, sql) in invariants::checks() {
        let n: i64 = client
            .query_one(sql.as_str(), &[])
            .await
            .with_context(|| format!("checking {name}"))?
            .get("n");
        if n != 0 {
            found.push(format!("{name}: {n} violations"));
        }
    }
    Ok(found)
}

/// Events not yet applied by the projection and the saga, from `/admin/projections`.
async fn lag(http: &reqwest::Client, base: &str) -> Result<i64> {
    let status: Value = http
        .get(format!("{base}/admin/projections"))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let projections = status["projections"].as_array().context("no projections")?;
    Ok(projections
        .iter()
        .map(|p| p["lag_events"].as_i64().unwrap_or(i64::MAX))
        .sum())
}

/// The same facts through the API: every product's stock, and every order the drivers
/// placed, as the read model answers them, equal the database's write model.
async fn api_agrees(
    client: &tokio_postgres::Client,
    http: &reqwest::Client,
    base: &str,
    shop: &Shop,
) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for product in &shop.products {
        let answer: Value = http
            .get(format!("{base}/products/{product}"))
            .send()
            .await?
            .json()
            .await?;
        let row = client
            .query_one(
                "SELECT stock, reserved FROM products.products WHERE id = $1::text::uuid",
                &[product],
            )
            .await?;
        let (stock, reserved): (i64, i64) = (row.get(0), row.get(1));
        if answer["stock"].as_i64() != Some(stock) || answer["reserved"].as_i64() != Some(reserved)
        {
            found.push(format!("product {product}: API says {answer}, database says stock {stock} reserved {reserved}"));
        }
    }
    let orders = shop.orders.lock().await.clone();
    for order in orders {
        let row = client
            .query_opt(
                "SELECT status, version FROM orders.orders WHERE id = $1::text::uuid",
                &[&order],
            )
            .await?
            .context("an accepted order is missing from the write model")?;
        let (status, version): (String, i64) = (row.get(0), row.get(1));
        let view: Value = http
            .get(format!("{base}/queries/orders/{order}"))
            .send()
            .await?
            .json()
            .await?;
        if view["status"].as_str() != Some(status.as_str())
            || view["version"].as_i64() != Some(version)
        {
            found.push(format!(
                "order {order}: read model {} v{}, write model {status} v{version}",
                view["status"], view["version"]
            ));
        }
    }
    Ok(found)
}

async fn post(http: &reqwest::Client, base: &str, path: &str, body: Value) -> Result<(u16, Value)> {
    let response = http
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await?;
    let status = response.status().as_u16();
    if status >= 500 {
        bail!("POST {path} answered {status}");
    }
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

fn id(body: &Value, field: &str) -> Result<String> {
    body[field]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no {field} in {body}"))
}
