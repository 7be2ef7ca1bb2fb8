//! `cargo xtask chaos`: crash the system while it works, then prove the contract's
//! invariants.
//!
//! It builds the release binary and starts a private Postgres of its own (`pgcluster`, in
//! `target/chaos/pg`, so it may crash it). Each round starts the server (some rounds two
//! processes at once), drives a concurrent mix of every command (`load.rs`; confirms with
//! every gateway token, the slow `tok_timeout` and `tok_timeout_failed` among them, against
//! a short gateway deadline so that calls are in flight) and `kill -9`s the servers, at a
//! random moment or the moment gateway calls are in flight (seen in the database: a
//! payment pending whose key the gateway's ledger holds), or crashes Postgres under them
//! instead. Then it starts what it killed, lets background work settle (projections caught
//! up, the reconciler and the saga done with every payment) and checks invariants 1-4 (crate `invariants`, the gateway's ledger against
//! the payments included) in the database, and the same facts through the API
//! (`check.rs`). It prints each round and ends with `N rounds, 0 violations`, or exits
//! non-zero with the evidence.

mod check;
mod load;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use std::{fs, process::ExitCode};

use anyhow::{Context, Result};
use serde_json::json;
use tokio::sync::Mutex;

use crate::db::{self, DbUrl};
use crate::load::Rng;
use crate::server::{Server, build_release, free_address};
use check::{scalar, settle_and_check};
use load::{Counts, drive, id, post};

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

/// What a round breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Crash {
    /// `kill -9` every one of `count` servers, at `when`.
    Servers { count: usize, when: Moment },
    /// Crash Postgres under a running server (immediate shutdown), then start it again.
    Postgres,
}

/// When servers are killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Moment {
    /// After a random 0.5 to 3 s of load.
    Random,
    /// After a random warm-up, as soon as gateway calls are in flight.
    GatewayCalls,
}

impl Crash {
    /// Round `round`'s: each of one server, two servers and Postgres within any three
    /// consecutive rounds (so `--rounds 3` tries each, a kill amid gateway calls among
    /// them), and each kind of kill at each moment within any six.
    fn of_round(round: u32) -> Crash {
        let servers = |count, when| Crash::Servers { count, when };
        match round % 6 {
            1 => servers(1, Moment::Random),
            2 => servers(2, Moment::GatewayCalls),
            4 => servers(1, Moment::GatewayCalls),
            5 => servers(2, Moment::Random),
            _ => Crash::Postgres,
        }
    }
}

pub(crate) fn run(root: &Path, rounds: u32, seed: Option<u64>) -> Result<ExitCode> {
    let binary = build_release(root)?;
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
         flight at the crashes; {} payments left unsettled by them{after}; {:.0?}",
        totals.sent,
        totals.slow,
        totals.failed,
        totals.in_flight,
        totals.unsettled,
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
    binary: PathBuf,
    work: PathBuf,
    url: DbUrl,
    postgres: pgcluster::Cluster,
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
                .round((round, rounds), Crash::of_round(round), &shop)
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

    fn start(&self, name: &str) -> Result<(Server, String)> {
        let address = free_address()?;
        let timeout = format!("{}ms", GATEWAY_TIMEOUT.as_millis());
        let env = [
            ("ADMIN_TOKEN", TOKEN),
            ("ACCESS_TOKEN_TTL", "1h"),
            // A few customers place most of the load.
            ("MAX_PENDING_ORDERS", "1000000"),
            ("PAYMENT_GATEWAY_TIMEOUT", timeout.as_str()),
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

    async fn round(
        &mut self,
        (round, rounds): (u32, u32),
        crash: Crash,
        shop: &Arc<Shop>,
    ) -> Result<Vec<String>> {
        let count = match crash {
            Crash::Servers { count, .. } => count,
            Crash::Postgres => 1,
        };
        let mut servers = Vec::new();
        for i in 0..count {
            servers.push(self.start(&format!("round{round}-server{i}"))?);
        }
        let probe = db::connect(&self.url).await?;
        let in_flight_now = invariants::gateway_calls_in_flight(SLOW_CALL, GATEWAY_TIMEOUT);
        let bases: Vec<String> = servers.iter().map(|(_, base)| base.clone()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let drivers: Vec<_> = (0..6)
            .map(|i| {
                let (shop, stop, base) =
                    (shop.clone(), stop.clone(), bases[i % bases.len()].clone());
                let rng = Rng::new(self.rng.next());
                tokio::spawn(drive(base, shop, rng, stop, counts.clone()))
            })
            .collect();
        let started = Instant::now();
        let (what, in_flight, crashed_after) = match crash {
            Crash::Servers { count, when } => {
                let in_flight = match when {
                    Moment::Random => {
                        let load = Duration::from_millis(500 + self.rng.next() % 2500);
                        tokio::time::sleep(load).await;
                        count_or_none(&probe, &in_flight_now).await
                    }
                    Moment::GatewayCalls => {
                        let warm_up = Duration::from_millis(300 + self.rng.next() % 1200);
                        tokio::time::sleep(warm_up).await;
                        let deadline = Instant::now() + IN_FLIGHT_WAIT;
                        loop {
                            let n = count_or_none(&probe, &in_flight_now).await;
                            if n > 0 || Instant::now() > deadline {
                                break n;
                            }
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                };
                let after = started.elapsed();
                for (server, _) in servers.drain(..) {
                    server.kill();
                }
                let moment = match when {
                    Moment::Random => "at a random moment",
                    Moment::GatewayCalls => "the moment gateway calls were in flight",
                };
                (
                    format!("killed {count} server(s) with -9 {moment}"),
                    in_flight,
                    after,
                )
            }
            Crash::Postgres => {
                let load = Duration::from_millis(500 + self.rng.next() % 2500);
                tokio::time::sleep(load).await;
                let in_flight = count_or_none(&probe, &in_flight_now).await;
                let after = started.elapsed();
                self.postgres.crash()?;
                tokio::time::sleep(Duration::from_millis(300 + self.rng.next() % 700)).await;
                self.postgres.start()?;
                (
                    "crashed and restarted Postgres under the server".to_owned(),
                    in_flight,
                    after,
                )
            }
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::SeqCst);
        for driver in drivers {
            let _ = driver.await;
        }
        // Before anything restarts: what the crash left for the reconciler and the saga.
        let unsettled = scalar(
            &db::connect(&self.url).await?,
            &invariants::unsettled_payments(),
        )
        .await?;
        let (sent, failed, slow) = (
            counts.sent.load(Ordering::SeqCst),
            counts.failed.load(Ordering::SeqCst),
            counts.slow.load(Ordering::SeqCst),
        );
        println!(
            "round {round}: {what} after {crashed_after:.1?}, {in_flight} gateway call(s) in flight; \
             {sent} requests ({slow} confirms with a slow token), {failed} failed (connection lost, \
             503, or a 5xx bug); {unsettled} payment(s) left pending or mid-refund"
        );
        let totals = &mut self.totals;
        totals.sent += sent;
        totals.failed += failed;
        totals.slow += slow;
        totals.in_flight += in_flight;
        totals.unsettled += unsettled;
        if servers.is_empty() {
            servers.push(self.start(&format!("round{round}-restarted"))?);
        }
        let base = servers[0].1.clone();
        let (found, took) = settle_and_check(&self.url, &base, shop).await?;
        drop(servers);
        let verdict = if found.is_empty() {
            "invariants hold".to_owned()
        } else {
            format!("{} VIOLATIONS", found.len())
        };
        println!("round {round}/{rounds}: {verdict} (settled in {took:.1?})");
        Ok(found)
    }
}

/// [`scalar`], or 0 when the database does not answer (a count for the figures only).
async fn count_or_none(client: &tokio_postgres::Client, sql: &str) -> i64 {
    scalar(client, sql).await.unwrap_or(0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crash_comes_within_a_few_rounds() {
        let target = |crash| match crash {
            Crash::Servers { count, .. } => count,
            Crash::Postgres => 0,
        };
        for first in 1..=12 {
            let three: Vec<usize> = (first..first + 3)
                .map(|r| target(Crash::of_round(r)))
                .collect();
            for kind in [0, 1, 2] {
                assert!(three.contains(&kind), "rounds {first}..+3: {three:?}");
            }
            let six: Vec<Crash> = (first..first + 6).map(Crash::of_round).collect();
            for count in [1, 2] {
                for when in [Moment::Random, Moment::GatewayCalls] {
                    let crash = Crash::Servers { count, when };
                    assert!(six.contains(&crash), "rounds {first}..+6 lack {crash:?}");
                }
            }
        }
        let ci: Vec<Crash> = (1..=3).map(Crash::of_round).collect();
        assert!(
            ci.iter().any(|c| matches!(
                c,
                Crash::Servers {
                    when: Moment::GatewayCalls,
                    ..
                }
            )),
            "--rounds 3 kills amid gateway calls: {ci:?}"
        );
    }
}
