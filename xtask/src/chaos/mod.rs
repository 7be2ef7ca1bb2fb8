//! `cargo xtask chaos`: crash the system while it works, then prove the contract's
//! invariants.
//!
//! It builds the release binary and starts a private Postgres of its own (`pgcluster`, in
//! `target/chaos/pg`, so it may crash it). Each round starts one to three server processes
//! on the one database (`plan.rs` says how many and what the round breaks), drives a
//! concurrent mix of every command spread over the instances serving (`load.rs`; confirms
//! with every gateway token, the slow `tok_timeout` and `tok_timeout_failed` among them,
//! against a short gateway deadline so that calls are in flight) and `kill -9`s one, two or
//! all of them, at a random moment or the moment gateway calls are in flight (seen in the
//! database: a payment pending whose key the gateway's ledger holds), or crashes Postgres
//! under them instead (`round.rs`). The instances left keep serving the load; the killed
//! ones are started again under it. It also starts a private `nats-server` (`natsserver`,
//! store in `target/chaos/nats`): from round 2 on the servers get `NATS_URL`, and every
//! other round `kill -9`s NATS at a random moment of the load too, besides the crash, and
//! starts it again on its store a random while later, under the load. Then it lets
//! background work settle (projections caught up, the reconciler and the saga done with
//! every payment, with NATS the publisher caught up with every log) and checks invariants
//! 1-4 (crate `invariants`, the gateway's ledger against the payments included) in the
//! database, and the same facts through the API of every instance (`check.rs`); with NATS
//! also invariant 4 against the whole stream: every event so far in it once, in log order,
//! under its subject and `Nats-Msg-Id`, its body the envelope (`stream.rs`). It prints
//! each round (how many instances ran, whether NATS ran and was killed, which servers were
//! killed, the requests each served) and ends with `N rounds, 0 violations`, or exits
//! non-zero with the evidence.

mod check;
mod load;
mod plan;
mod round;
mod stream;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::{fs, process::ExitCode};

use anyhow::{Context, Result};
use serde_json::json;
use tokio::sync::Mutex;

use crate::db::{self, DbUrl};
use crate::load::Rng;
use crate::server::{Server, build_release, free_address};
use load::{id, post};
use plan::Plan;

const TOKEN: &str = "chaos-admin-token";
const USERS: usize = 6;
const STOCKS: [i64; 5] = [5, 20, 50, 100, 400];
/// The servers' `PAYMENT_GATEWAY_TIMEOUT`: short, so that a slow token's call (answered
/// after twice it) is in flight for a good part of each round, and the reconciler (which
/// first asks after twice it) settles soon after a restart.
const GATEWAY_TIMEOUT: Duration = Duration::from_millis(300);
/// How long a round waits for gateway calls in flight before it kills anyway.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(10);
/// A payment pending for longer than this is a call the gateway is slow to answer (one
/// answered at once is settled within a few milliseconds).
const SLOW_CALL: Duration = Duration::from_millis(50);
/// The private cluster's `max_connections`. An instance may open up to 36 (six pools of
/// `DB_POOL_SIZE` 4, four delivery pools of 2, two for `/health/ready`, two `LISTEN`s),
/// so three of them could exhaust Postgres's default 100.
const MAX_CONNECTIONS: u32 = 200;

pub(crate) fn run(root: &Path, rounds: u32, seed: Option<u64>) -> Result<ExitCode> {
    let binary = build_release(root)?;
    let work = root.join("target").join("chaos");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let postgres = pgcluster::Cluster::new(work.join("pg"))?;
    let port = postgres.start()?;
    let url = db::cluster_url(port, "emporium_chaos");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let admin = db::connect(&db::cluster_url(port, "postgres")).await?;
        let sql = format!("ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS}");
        admin
            .batch_execute(&sql)
            .await
            .context("raising max_connections")
    })?;
    // `max_connections` takes a restart.
    postgres.stop()?;
    postgres.start()?;
    let nats = natsserver::NatsServer::start(work.join("nats"))?;
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1
    });
    println!(
        "chaos: seed {seed}, {rounds} rounds, database {url}, NATS {} (for rounds 2 on)",
        nats.url()
    );
    let chaos = Chaos {
        launcher: Launcher {
            binary,
            work,
            url: url.clone(),
            nats_url: None,
        },
        url,
        postgres,
        nats: Arc::new(std::sync::Mutex::new(nats)),
        rng: Rng::new(seed),
        totals: Totals::default(),
    };
    let started = Instant::now();
    let (violations, totals) = runtime
        .block_on(chaos.rounds(rounds))
        .with_context(|| format!("chaos harness failed (seed {seed})"))?;
    let after = if violations.is_empty() {
        ", every one settled after"
    } else {
        ""
    };
    println!(
        "chaos: {} requests ({} confirms with a slow token), {} failed; {} gateway calls in \
         flight at the crashes; {} payments left unsettled by them{after}; NATS killed {} \
         time(s); {:.0?}",
        totals.sent,
        totals.slow,
        totals.failed,
        totals.in_flight,
        totals.unsettled,
        totals.nats_kills,
        started.elapsed()
    );
    if violations.is_empty() {
        println!("{rounds} rounds, 0 violations");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{rounds} rounds, {} violations (seed {seed}):",
            violations.len()
        );
        for violation in violations {
            println!("  {violation}");
        }
        Ok(ExitCode::FAILURE)
    }
}

struct Chaos {
    launcher: Launcher,
    url: DbUrl,
    postgres: pgcluster::Cluster,
    /// The run's NATS, in `target/chaos/nats`; shared with the task that kills it.
    nats: Arc<std::sync::Mutex<natsserver::NatsServer>>,
    rng: Rng,
    totals: Totals,
}

/// The figures of the whole run.
#[derive(Default, Clone, Copy)]
struct Totals {
    sent: u64,
    failed: u64,
    slow: u64,
    /// Gateway calls in flight the moment each crash landed.
    in_flight: i64,
    /// Payments pending, or with a refund unconfirmed, right after each crash.
    unsettled: i64,
    nats_kills: u32,
}

/// The shop the load works on: ids known to the drivers.
#[derive(Default)]
struct Shop {
    users: Vec<String>,
    /// An access token of each user, in the same order (valid for `ACCESS_TOKEN_TTL`).
    tokens: Vec<String>,
    /// An access token of a staff member holding `catalog`, `fulfilment` and `support`.
    staff: String,
    products: Vec<String>,
    /// Every accepted order, with its owner's index in `users`.
    orders: Mutex<Vec<(String, usize)>>,
}

impl Chaos {
    async fn rounds(mut self, rounds: u32) -> Result<(Vec<String>, Totals)> {
        let shop = Arc::new(self.seed().await?);
        let mut violations = Vec::new();
        for round in 1..=rounds {
            let found = self
                .round((round, rounds), Plan::of_round(round), &shop)
                .await
                .with_context(|| format!("round {round}"))?;
            violations.extend(found.into_iter().map(|v| format!("round {round}: {v}")));
            if !violations.is_empty() {
                break;
            }
        }
        let _ = self.postgres.remove();
        Ok((violations, self.totals))
    }

    /// Users and products, through the API of a first server.
    async fn seed(&mut self) -> Result<Shop> {
        let (server, base) = self.launcher.start("seed")?;
        let http = reqwest::Client::new();
        let mut shop = Shop {
            staff: staff(&http, &base).await?,
            ..Shop::default()
        };
        for i in 0..USERS {
            let (email, password) = (format!("chaos{i}@example.com"), "chaos password");
            let user = post(
                &http,
                &base,
                "",
                "/users",
                json!({"email": email, "name": format!("Chaos {i}"), "password": password}),
            )
            .await?;
            shop.users.push(id(&user.1, "id")?);
            // Each customer logs in like a client; renames are made with its own token.
            let login = post(
                &http,
                &base,
                "",
                "/auth/token",
                json!({"grant_type": "password", "email": email, "password": password}),
            )
            .await?;
            shop.tokens.push(id(&login.1, "access_token")?);
        }
        for (i, stock) in STOCKS.into_iter().enumerate() {
            let body = json!({"name": format!("Item {i}"), "price": format!("{}.{:02}", i + 1, i * 7 % 100), "stock": stock});
            let product = post(&http, &base, &shop.staff, "/products", body).await?;
            shop.products.push(id(&product.1, "id")?);
        }
        drop(server);
        Ok(shop)
    }
}

/// Starts servers of the release binary on the chaos database; plain threads' work (it
/// waits until each is ready), so a round runs it off the runtime while its load goes on.
#[derive(Clone)]
struct Launcher {
    binary: PathBuf,
    work: PathBuf,
    url: DbUrl,
    /// The servers' `NATS_URL`: none until the first round with NATS, then for good.
    nats_url: Option<String>,
}

impl Launcher {
    /// One server logging to `<name>.log`, ready: it and its base URL.
    fn start(&self, name: &str) -> Result<(Server, String)> {
        let mut started = self.start_all(&[name.to_owned()])?;
        Ok(started.remove(0))
    }

    /// One server per name, started at once (their migrations meet at start) and then
    /// waited for until each is ready.
    fn start_all(&self, names: &[String]) -> Result<Vec<(Server, String)>> {
        let timeout = format!("{}ms", GATEWAY_TIMEOUT.as_millis());
        let mut env = vec![
            ("ADMIN_TOKEN", TOKEN),
            ("ACCESS_TOKEN_TTL", "1h"),
            // A few customers place most of the load.
            ("MAX_PENDING_ORDERS", "1000000"),
            ("PAYMENT_GATEWAY_TIMEOUT", timeout.as_str()),
            ("HTTP_WORKERS", "2"),
            ("DB_POOL_SIZE", "4"),
            ("RUST_LOG", "warn"),
        ];
        if let Some(nats_url) = &self.nats_url {
            env.push(("NATS_URL", nats_url));
        }
        let mut started = Vec::new();
        for name in names {
            let address = free_address()?;
            let log = self.work.join(format!("{name}.log"));
            let server = Server::start(&self.binary, &address, &self.url, &env, &log)?;
            started.push((server, address));
        }
        started
            .into_iter()
            .map(|(mut server, address)| {
                server.wait_until_ready(&address, Duration::from_secs(60))?;
                Ok((server, format!("http://{address}")))
            })
            .collect()
    }
}

/// Registers the staff member the drivers' catalog, fulfilment and support work runs as,
/// grants the roles with the admin token, and logs in: its access token.
async fn staff(http: &reqwest::Client, base: &str) -> Result<String> {
    let (email, password) = ("chaos-staff@example.com", "chaos staff password");
    let body = json!({"email": email, "name": "Chaos staff", "password": password});
    let user = post(http, base, "", "/users", body).await?;
    let roles = json!({"roles": ["catalog", "fulfilment", "support"]});
    let granted = http
        .put(format!("{base}/users/{}/roles", id(&user.1, "id")?))
        .bearer_auth(TOKEN)
        .json(&roles)
        .send()
        .await?;
    anyhow::ensure!(
        granted.status().is_success(),
        "granting roles: {}",
        granted.status()
    );
    let login = json!({"grant_type": "password", "email": email, "password": password});
    let tokens = post(http, base, "", "/auth/token", login).await?;
    id(&tokens.1, "access_token")
}
