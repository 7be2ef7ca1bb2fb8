//! `cargo xtask soak [--minutes 10]`: a steady mixed load at half the measured capacity
//! for a while, watching for what keeps growing.
//!
//! Phases, in order (everything it writes goes to `target/soak/`):
//! 1. **Start.** The release build on a fresh database of its own, in a private Postgres
//!    cluster (`crate::rig`, `Postgres::Private`: a `DROP DATABASE` of another program on
//!    a shared Postgres checkpoints the soak's pages too, and stalled it for seconds), with
//!    short lifetimes for everything a bounded table keeps ([`server_env`]: idempotency
//!    keys, failed logins and refresh tokens count for 10 s, the users purger runs every
//!    5 s, the orders sweeper every second as always, a pending order expires after 30 s),
//!    so that even a one-minute run purges each of those tables many times.
//! 2. **Seed** through the API (`seed::via_api`): 40 customers, each logged in, and 50
//!    products with ample stock.
//! 3. **Capacity**: 16 connections send the mix (`mix.rs`: every kind of request that
//!    fills a bounded table or holds memory) back to back for 5 s, closed loop; the rate
//!    they reach is the capacity.
//! 4. **Soak**: an open-loop driver (`load::drive_at`) sends the same mix at half the
//!    capacity for the given minutes, while a sample (`sample.rs`) is taken every thirtieth
//!    of the run, between 2 and 5 s: each route's latencies, errors, `VmRSS`, pool waits,
//!    projection lag, rows of the bounded tables and of those that grow by design, and the
//!    CPU that other processes on the machine took (`cpu.rs`).
//! 5. **Verdict** (`verdict.rs`): after a warm-up third, the last third against the middle
//!    one: memory, each bounded table and the projection backlog must plateau, no route's
//!    p99 may drift up, and there must be no error at all.
//! 6. **Report** (`report.rs`, `plot.rs`): a Markdown table on stdout and in
//!    `target/soak/report.md`, every sample in `target/soak/samples.csv`, a plot in
//!    `target/soak/soak.svg`; a run of ten minutes or more also writes BENCHMARKS.md's Soak
//!    section (between markers) and `docs/soak.svg`. The command fails when the verdict
//!    does.

mod cpu;
mod mix;
mod plot;
mod report;
mod sample;
mod verdict;

use std::fs;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::db;
use crate::load::{self, Control, Driven, Rng};
use crate::machine::{Machine, cores};
use crate::rig::{Postgres, Rig};
use crate::seed;
use crate::server::Server;
use cpu::CpuMeter;
use mix::Shop;
use sample::Sample;
use verdict::{MIN_SAMPLES, judge};

const ADMIN_TOKEN: &str = "soak-admin-token";
const CUSTOMERS: usize = 40;
const PRODUCTS: usize = 50;
/// `IDEMPOTENCY_TTL`, `LOGIN_LOCK_WINDOW` and `REFRESH_TOKEN_TTL` of the run.
const TTL: Duration = Duration::from_secs(10);
/// The closed-loop burst that measures capacity.
const CONNECTIONS: usize = 16;
const CAPACITY_TIME: Duration = Duration::from_secs(5);
/// A run at least this long writes BENCHMARKS.md; a shorter one is a check (CI's minute).
const RECORDED_MINUTES: u32 = 10;

/// The server's configuration for the run: short lifetimes, so that purging happens many
/// times a minute; sizing as the bench's (`bench/plan.rs`).
fn server_env() -> Vec<(&'static str, String)> {
    let ttl = format!("{}s", TTL.as_secs());
    vec![
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("HTTP_WORKERS", cores().to_string()),
        ("DB_POOL_SIZE", "8".to_owned()),
        ("IDEMPOTENCY_TTL", ttl.clone()),
        ("LOGIN_LOCK_WINDOW", ttl.clone()),
        ("REFRESH_TOKEN_TTL", ttl),
        ("PURGE_INTERVAL", "5s".to_owned()),
        ("ORDER_EXPIRY", "30s".to_owned()),
        // The customers' access tokens outlast the run; a few customers place every order.
        ("ACCESS_TOKEN_TTL", "24h".to_owned()),
        ("MAX_PENDING_ORDERS", "1000000".to_owned()),
    ]
}

/// What the closed-loop burst reached.
struct Capacity {
    per_second: f64,
    connections: usize,
    time: Duration,
    p99: Duration,
    errors: u64,
    /// The share of the machine's CPU other processes took during the burst.
    others_cpu: f64,
}

/// Everything a run measured.
struct Run {
    minutes: u32,
    every: Duration,
    capacity: Capacity,
    rate: f64,
    driven: Driven,
    samples: Vec<Sample>,
    machine: Machine,
    server_env: String,
    log: Log,
}

/// What the server logged during the run: lines, and the warnings and errors among them.
#[derive(Default)]
struct Log {
    lines: u64,
    warnings: u64,
    errors: u64,
    /// The first warning or error.
    first: Option<String>,
}

impl Log {
    /// Counts the levels of the JSON log at `path` (`LOG_FORMAT=json`, as `Server` starts it).
    fn read(path: &Path) -> Result<Log> {
        use std::io::BufRead as _;
        let file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut log = Log::default();
        for line in std::io::BufReader::new(file).lines() {
            let line = line?;
            log.lines += 1;
            let (warning, error) = (
                line.contains("\"level\":\"WARN\""),
                line.contains("\"level\":\"ERROR\""),
            );
            log.warnings += u64::from(warning);
            log.errors += u64::from(error);
            if warning || error {
                log.first.get_or_insert(line);
            }
        }
        Ok(log)
    }
}

pub(crate) fn run(root: &Path, minutes: u32) -> Result<ExitCode> {
    let minutes = minutes.max(1);
    let rig = Rig::new(root, "soak", ADMIN_TOKEN, Postgres::Private)?;
    let soaked = soak(root, &rig, minutes);
    rig.clean_up(&[]);
    let run = soaked?;
    let verdict = judge(&run.samples);
    let out = &rig.out;
    let report = report::markdown(&run, &verdict, "soak.svg");
    println!("{report}");
    let plot = plot::svg(&run.samples);
    for (name, text) in [
        ("report.md", format!("# Soak\n\n{report}")),
        ("samples.csv", report::csv(&run.samples)),
        ("soak.svg", plot.clone()),
    ] {
        let path = out.join(name);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if minutes >= RECORDED_MINUTES {
        let docs = root.join("docs");
        fs::create_dir_all(&docs)?;
        fs::write(docs.join("soak.svg"), plot).context("writing docs/soak.svg")?;
        let report = report::markdown(&run, &verdict, "docs/soak.svg");
        report::write_benchmarks(&root.join("BENCHMARKS.md"), &report)?;
        eprintln!("xtask: soak done; report in BENCHMARKS.md and docs/soak.svg");
    } else {
        eprintln!("xtask: soak done; report in {}", out.display());
    }
    Ok(if verdict.passed() {
        ExitCode::SUCCESS
    } else {
        eprintln!("xtask: soak FAILED: see the checks above");
        ExitCode::FAILURE
    })
}

/// Starts the server, seeds, measures capacity, then soaks for `minutes` and samples.
fn soak(root: &Path, rig: &Rig, minutes: u32) -> Result<Run> {
    let duration = Duration::from_secs(60 * u64::from(minutes));
    let every = (duration / 30).clamp(Duration::from_secs(2), Duration::from_secs(5));
    let env = server_env();
    let (server, _) = rig.start(&env, "server.log")?;
    let api = &rig.api;
    let (shop, capacity) = rig.block_on(async {
        api.log_in_staff().await?;
        eprintln!("xtask: seeding {CUSTOMERS} customers and {PRODUCTS} products");
        let (catalog, _) = seed::via_api(api, (CUSTOMERS, PRODUCTS, 0), CONNECTIONS).await?;
        let shop = Arc::new(Shop::open(api, catalog.users, catalog.products, TTL).await?);
        let client = db::connect(&rig.url).await?;
        let mut cpu = CpuMeter::new(server.pid())?;
        let mut capacity = capacity(&shop).await?;
        capacity.others_cpu = cpu.others(&client).await?;
        load::caught_up(api, Duration::from_secs(120)).await?;
        Ok((shop, capacity))
    })?;
    let rate = capacity.per_second / 2.0;
    eprintln!(
        "xtask: capacity {:.0} requests/s (p99 {:.1} ms, {} errors); soaking at {rate:.0}/s for {} s, a sample every {} s",
        capacity.per_second,
        capacity.p99.as_secs_f64() * 1000.0,
        capacity.errors,
        duration.as_secs(),
        every.as_secs()
    );
    let (driven, samples) = rig.block_on(async {
        shop.recorder.take();
        let control = Arc::new(Control::default());
        let driver = tokio::spawn(load::drive_at(rate, control.clone(), {
            let (shop, mut rng) = (shop.clone(), Rng::new(0x50a4));
            move || {
                let (call, shop) = (shop.call(&mut rng), shop.clone());
                async move {
                    shop.execute(call).await;
                    Ok(())
                }
            }
        }));
        let samples = sample_for(rig, (&server, &shop, &control), (duration, every)).await;
        control.stop.store(true, Ordering::Relaxed);
        let driven = driver.await.context("the driver panicked")?;
        Ok((driven, samples?))
    })?;
    Ok(Run {
        minutes,
        every,
        capacity,
        rate,
        driven,
        samples,
        machine: rig.block_on(Machine::read(root, &rig.url))?,
        log: Log::read(&rig.out.join("server.log"))?,
        server_env: env
            .iter()
            .filter(|(k, _)| *k != "ADMIN_TOKEN")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
    })
}

/// The closed-loop burst: [`CONNECTIONS`] workers sending the mix back to back for
/// [`CAPACITY_TIME`].
async fn capacity(shop: &Arc<Shop>) -> Result<Capacity> {
    eprintln!(
        "xtask: capacity: {CONNECTIONS} connections, closed loop, {} s",
        CAPACITY_TIME.as_secs()
    );
    let started = Instant::now();
    let deadline = started + CAPACITY_TIME;
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|worker| {
            let shop = shop.clone();
            tokio::spawn(async move {
                let mut rng = Rng::new(worker as u64);
                while Instant::now() < deadline {
                    let call = shop.call(&mut rng);
                    shop.execute(call).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.context("a capacity worker panicked")?;
    }
    let elapsed = started.elapsed();
    let window = shop.recorder.take();
    ensure!(
        window.errors < window.requests,
        "every request of the capacity burst failed; the first: {}",
        window.first_error.unwrap_or_default()
    );
    Ok(Capacity {
        per_second: window.requests as f64 / elapsed.as_secs_f64(),
        connections: CONNECTIONS,
        time: CAPACITY_TIME,
        p99: load::quantile(&window.all(), 0.99),
        errors: window.errors,
        others_cpu: 0.0,
    })
}

/// A sample every `every` for `duration`, each printed as it is taken.
async fn sample_for(
    rig: &Rig,
    (server, shop, driver): (&Server, &Shop, &Control),
    (duration, every): (Duration, Duration),
) -> Result<Vec<Sample>> {
    let client = db::connect(&rig.url).await?;
    let mut cpu = CpuMeter::new(server.pid())?;
    let count = (duration.as_secs_f64() / every.as_secs_f64()).round() as usize;
    ensure!(count >= MIN_SAMPLES, "{count} samples are too few to judge");
    let started = Instant::now();
    let mut ticker = tokio::time::interval_at((started + every).into(), every);
    let (mut samples, mut since, mut skipped) = (Vec::with_capacity(count), started, 0);
    eprintln!("xtask:   t  req/s errors p99 ms  RSS MiB  keys failures refresh  backlog others");
    for _ in 0..count {
        ticker.tick().await;
        let now = Instant::now();
        let window = shop.recorder.take();
        let taken = (now - started, window, now - since);
        let mut sample = sample::measure((&rig.api, server, &client), &mut cpu, taken).await?;
        let now_skipped = driver.skipped.load(Ordering::Relaxed);
        (sample.skipped, skipped) = (now_skipped - skipped, now_skipped);
        since = now;
        eprintln!(
            "xtask: {:>3} {:>6.1} {:>6} {:>6.1} {:>8.1} {:>5} {:>8} {:>7} {:>8.0} {:>5.0} %",
            sample.at.as_secs(),
            sample.per_second(),
            sample.window.errors,
            sample.p99().as_secs_f64() * 1000.0,
            sample.rss_mib(),
            sample.bounded[0],
            sample.bounded[1],
            sample.bounded[2],
            sample.lag_events,
            sample.others_cpu * 100.0
        );
        samples.push(sample);
    }
    Ok(samples)
}
