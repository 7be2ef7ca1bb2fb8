//! `cargo xtask bench [--smoke] [--duration SECS] [--concurrency N]`: emporium's numbers
//! beside the database's own limit on the same machine.
//!
//! Phases, in order (everything it writes goes to `target/bench/`):
//! 1. **Build and start.** `cargo build --release -p emporium`; a Postgres (`db::ensure`);
//!    a fresh database `emporium_bench` (dropped and created); the server, sized for the
//!    machine. Measures the time from process start to `/health/ready` = 200 (with the
//!    migrations of the empty database, and again at the end on a restart over the seeded
//!    one).
//! 2. **Seed** through the API with a concurrent async driver (`load.rs`): users, products
//!    with ample stock, orders of which a fixed share is confirmed, shipped, delivered or
//!    cancelled. Then `VACUUM ANALYZE`, as autovacuum would do in a while.
//! 3. **Throughput** with `wrk` (Debian's, installed with apt if missing and root), one Lua
//!    script per phase, each for a fixed duration at a fixed concurrency: the order by id,
//!    a user's orders, a product by id, order placement, and placement then confirmation
//!    (a state machine per connection in wrk's `response()` callback; one wrk thread per
//!    connection so that thread state is connection state). Scripts report through wrk's
//!    `done()`: requests, latency p50/p99, non-2xx and socket errors.
//! 4. **Projection lag**: a rate-limited Rust driver places orders at 80 % of the measured
//!    placement rate while probes place an order and poll the read model until it shows.
//! 5. **Rebuild** of the read model over the whole log: events/s.
//! 6. **Peak RSS** of the server (`VmHWM`), then the restart's ready time.
//! 7. **pgbench** in its own database at the same client count: `-S` (select-only) and the
//!    default tpcb-like script, as the reference each figure is divided by.
//! 8. **Report**: a table on stdout and in `BENCHMARKS.md` (between markers, so the
//!    analysis written under it survives a new run); `--smoke` (tiny data, short phases,
//!    for CI) writes `target/bench/smoke.md` instead. Missing a target never fails the
//!    command; a harness that breaks (the server does not start, a phase gets only errors)
//!    does.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::load::{self, Api, Catalog, Lag, Rebuild, Seeded};
use crate::server::{Server, target_directory};
use crate::{apt, cargo, db, describe, succeed};

const ADMIN_TOKEN: &str = "bench-admin-token";
/// The run's databases are these names with the process id: two runs against one Postgres
/// (a full run and CI's smoke run, say) must not drop each other's.
const DATABASE: &str = "emporium_bench";
const PGBENCH_DATABASE: &str = "emporium_pgbench";
/// The markers around the part of BENCHMARKS.md each run rewrites.
const BEGIN: &str =
    "<!-- bench:begin: written by `cargo xtask bench`; edit outside the markers -->";
const END: &str = "<!-- bench:end -->";

/// What `cargo xtask bench` was asked for.
pub(crate) struct Options {
    pub(crate) smoke: bool,
    /// Seconds per load phase (default 10, smoke 2).
    pub(crate) duration: Option<u64>,
    pub(crate) concurrency: usize,
}

/// The sizes of a run.
struct Plan {
    smoke: bool,
    users: usize,
    products: usize,
    orders: usize,
    duration: Duration,
    concurrency: usize,
    probes: usize,
    pgbench_scale: u32,
    /// The server's sizing, as environment variables.
    server_env: Vec<(&'static str, String)>,
}

impl Plan {
    fn new(options: &Options) -> Plan {
        let cores = cores();
        let (users, products, orders, seconds, probes, scale) = if options.smoke {
            (50, 20, 300, 2, 30, 1)
        } else {
            (10_000, 1_000, 100_000, 10, 300, 10)
        };
        Plan {
            smoke: options.smoke,
            users,
            products,
            orders,
            duration: Duration::from_secs(options.duration.unwrap_or(seconds).max(1)),
            concurrency: options.concurrency.max(1),
            probes,
            pgbench_scale: scale,
            // One HTTP worker per core (actix's default, stated); the default pool of 8
            // connections per module (see BENCHMARKS.md); orders do not expire during the
            // run, so the data set stays what was seeded.
            server_env: vec![
                ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
                ("HTTP_WORKERS", cores.to_string()),
                ("DB_POOL_SIZE", "8".to_owned()),
                ("ORDER_EXPIRY", "24h".to_owned()),
            ],
        }
    }
}

pub(crate) fn run(root: &Path, options: &Options) -> Result<()> {
    let plan = Plan::new(options);
    let out = root.join("target").join("bench");
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let tools = Tools {
        wrk: apt::ensure_installed(Path::new("/usr/bin/wrk"), "wrk")?,
        pgbench: pgbench()?,
    };
    eprintln!("xtask: cargo build --release -p emporium");
    succeed(&mut cargo(root, &["build", "--release", "-p", "emporium"]))?;
    let binary = target_directory(root)?.join("release").join("emporium");
    let postgres = db::ensure(root)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;
    let names = [DATABASE, PGBENCH_DATABASE].map(|name| format!("{name}_{}", std::process::id()));
    let url = runtime.block_on(fresh_database(&postgres, &names[0]))?;
    let address = free_address()?;
    let bench = Bench {
        api: Api::new(&address, ADMIN_TOKEN)?,
        plan,
        runtime,
        binary,
        address,
        url,
        out,
    };
    let measured = measure(root, &bench, &tools, &postgres, &names[1]);
    for name in &names {
        if let Err(error) = bench.block_on(drop_database(&postgres, name)) {
            eprintln!("xtask: warning: {error:#}");
        }
    }
    report(root, &bench, &measured?)
}

/// Every phase, against the server and databases of `bench`.
fn measure(
    root: &Path,
    bench: &Bench,
    tools: &Tools,
    postgres: &str,
    pgbench_database: &str,
) -> Result<Results> {
    let mut results = Results::new(&bench.plan);
    let (server, ready) = bench.start("server.log")?;
    results.ready = ready;
    let catalog = bench.seed(&mut results)?;
    for phase in &PHASES {
        let run = run_wrk(&tools.wrk, &bench.plan, &bench.address, &bench.out, phase)?;
        eprintln!("xtask: {}: {}", phase.name, run.summary());
        results.wrk.insert(phase.name, run);
        bench.caught_up()?;
    }
    results.lag = Some(bench.lag(&catalog, results.wrk["create"].per_second())?);
    results.rebuild = Some(bench.rebuild()?);
    results.rss_kib = peak_rss(server.pid())?;
    drop(server);
    let (server, ready) = bench.start("restart.log")?;
    results.restart_ready = ready;
    drop(server);

    let pgbench_url = bench.block_on(fresh_database(postgres, pgbench_database))?;
    results.pgbench = Some(run_pgbench(
        &tools.pgbench,
        &bench.plan,
        &pgbench_url,
        &bench.out,
    )?);
    results.machine = Some(bench.block_on(Machine::read(root, &bench.url))?);
    Ok(results)
}

/// Prints the report and writes it where it belongs.
fn report(root: &Path, bench: &Bench, results: &Results) -> Result<()> {
    let report = results.report();
    println!("{report}");
    if bench.plan.smoke {
        let path = bench.out.join("smoke.md");
        fs::write(&path, format!("# Benchmark smoke run\n\n{report}"))?;
        eprintln!("xtask: bench --smoke done; report in {}", path.display());
    } else {
        let path = root.join("BENCHMARKS.md");
        write_benchmarks(&path, &report)?;
        eprintln!("xtask: bench done; report in {}", path.display());
    }
    Ok(())
}

/// One run's fixed parts: what it drives, where, and with what.
struct Bench {
    plan: Plan,
    runtime: tokio::runtime::Runtime,
    binary: PathBuf,
    address: String,
    /// The run's own database.
    url: String,
    api: Api,
    /// target/bench
    out: PathBuf,
}

impl Bench {
    fn block_on<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        self.runtime.block_on(work)
    }

    /// Starts the server, logging to `log`; it and the time from process start to
    /// `/health/ready` = 200.
    fn start(&self, log: &str) -> Result<(Server, Duration)> {
        let env: Vec<(&str, &str)> = self
            .plan
            .server_env
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let started = Instant::now();
        let mut server = Server::start(
            &self.binary,
            &self.address,
            &self.url,
            &env,
            &self.out.join(log),
        )?;
        server.wait_until_ready(&self.address, Duration::from_secs(60))?;
        let ready = started.elapsed();
        eprintln!("xtask: ready in {:.0} ms", ms(ready));
        Ok((server, ready))
    }

    /// Seeds the data set, lets the projection catch up, `VACUUM ANALYZE`s, and writes the
    /// ids for the wrk scripts.
    fn seed(&self, results: &mut Results) -> Result<Arc<Catalog>> {
        let plan = &self.plan;
        eprintln!(
            "xtask: seeding {} users, {} products, {} orders",
            plan.users, plan.products, plan.orders
        );
        let sizes = (plan.users, plan.products, plan.orders);
        let (catalog, seeded) = self.block_on(load::seed(&self.api, sizes, plan.concurrency))?;
        for step in &seeded {
            eprintln!("xtask: seeded {}: {:.0}/s", step.what, step.per_second());
        }
        results.seeded = seeded;
        self.caught_up()?;
        self.block_on(vacuum_analyze(&self.url))?;
        write_ids(&self.out, &catalog)?;
        Ok(Arc::new(catalog))
    }

    /// Waits until the projection has applied every event, so a phase starts quiet.
    fn caught_up(&self) -> Result<()> {
        self.block_on(load::caught_up(&self.api, Duration::from_secs(600)))
    }

    /// Projection lag while placing orders at 80 % of `max_rate`.
    fn lag(&self, catalog: &Arc<Catalog>, max_rate: f64) -> Result<Lag> {
        let rate = 0.8 * max_rate;
        eprintln!(
            "xtask: projection lag: up to {} probes while placing {rate:.0} orders/s",
            self.plan.probes
        );
        let limit = self.plan.duration * 6;
        let lag = self.block_on(load::projection_lag(
            &self.api,
            catalog,
            rate,
            self.plan.probes,
            limit,
        ))?;
        eprintln!(
            "xtask: lag: p50 {:.1} ms, p99 {:.1} ms, {} probes, {} unseen",
            ms(load::quantile(&lag.samples, 0.5)),
            ms(load::quantile(&lag.samples, 0.99)),
            lag.samples.len(),
            lag.unseen
        );
        self.caught_up()?;
        Ok(lag)
    }

    /// Rebuilds the read model; returns once the old generation is deleted too.
    ///
    /// The end is watched in the database (no `building` generation left: the switch has
    /// committed), every 10 ms, then confirmed by `/admin/projections`: that status counts
    /// every event log, and polling it as often would slow the rebuild down.
    fn rebuild(&self) -> Result<Rebuild> {
        eprintln!("xtask: rebuilding the read model");
        let rebuild = self.block_on(async {
            let client = connect(&self.url).await?;
            let (events, started) = load::start_rebuild(&self.api).await?;
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let row = client
                    .query_one(
                        "SELECT count(*) FROM orders_read.generations WHERE state = 'building'",
                        &[],
                    )
                    .await?;
                if row.get::<_, i64>(0) == 0 {
                    break;
                }
                ensure!(
                    started.elapsed() < Duration::from_secs(3600),
                    "the rebuild did not finish within an hour"
                );
            }
            let elapsed = started.elapsed();
            ensure!(
                load::rebuild_done(&self.api).await?,
                "the rebuild's generation is live but /admin/projections still shows it"
            );
            Ok(Rebuild { events, elapsed })
        })?;
        eprintln!(
            "xtask: rebuilt {} events at {:.0}/s",
            rebuild.events,
            rebuild.per_second()
        );
        self.block_on(retired(&self.url))?;
        Ok(rebuild)
    }
}

struct Tools {
    wrk: PathBuf,
    pgbench: PathBuf,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn free_address() -> Result<String> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    Ok(format!("127.0.0.1:{port}"))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `url` with another database name.
fn with_database(url: &str, name: &str) -> Result<String> {
    let authority = url.find("://").context("a database url without a scheme")? + 3;
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    Ok(format!("{}/{name}{query}", &base[..path]))
}

/// Drops database `name` on the server of `url`.
async fn drop_database(url: &str, name: &str) -> Result<()> {
    connect(&with_database(url, "postgres")?)
        .await?
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .with_context(|| format!("dropping database {name}"))
}

/// A connection to `url`, driven in the background.
async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Drops and creates database `name` on the server of `url`; its url.
async fn fresh_database(url: &str, name: &str) -> Result<String> {
    let admin = connect(&with_database(url, "postgres")?).await?;
    // One statement each: DROP DATABASE refuses to run in a (multi-statement) transaction.
    for statement in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin
            .batch_execute(&statement)
            .await
            .with_context(|| format!("recreating database {name}: {statement}"))?;
    }
    with_database(url, name)
}

/// What autovacuum would do after a bulk load, now: fresh statistics for the planner
/// and a visibility map for index-only scans.
async fn vacuum_analyze(url: &str) -> Result<()> {
    eprintln!("xtask: VACUUM ANALYZE");
    connect(url)
        .await?
        .batch_execute("VACUUM ANALYZE")
        .await
        .context("VACUUM ANALYZE")
}

/// Waits until the rebuild's old generation is deleted (it is, right after the switch),
/// so that no delete runs under the next phase.
async fn retired(url: &str) -> Result<()> {
    let client = connect(url).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let row = client
            .query_one("SELECT count(*) FROM orders_read.generations", &[])
            .await
            .context("counting generations")?;
        if row.get::<_, i64>(0) == 1 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the old generation was not retired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Seeded ids, one per line, for the wrk scripts.
fn write_ids(out: &Path, catalog: &Catalog) -> Result<()> {
    for (name, ids) in [
        ("users", &catalog.users),
        ("products", &catalog.products),
        ("orders", &catalog.orders),
    ] {
        let path = out.join(format!("{name}.txt"));
        fs::write(&path, ids.join("\n") + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `VmHWM` of process `pid`, in KiB.
fn peak_rss(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status")
}

// ---------------------------------------------------------------------------------------
// wrk

/// One fixed-duration, fixed-concurrency wrk run.
struct Phase {
    name: &'static str,
    figure: &'static str,
    script: &'static str,
    /// A state machine per connection: one wrk thread per connection.
    per_connection: bool,
}

const PHASES: [Phase; 5] = [
    Phase {
        name: "order_by_id",
        figure: "`GET /queries/orders/{id}`",
        script: r#"
local orders = ids("orders")
request = function()
  return wrk.format("GET", "/queries/orders/" .. orders[math.random(#orders)])
end
"#,
        per_connection: false,
    },
    Phase {
        name: "orders_by_user",
        figure: "`GET /queries/orders?user_id=`",
        script: r#"
local users = ids("users")
request = function()
  return wrk.format("GET", "/queries/orders?user_id=" .. users[math.random(#users)])
end
"#,
        per_connection: false,
    },
    Phase {
        name: "product_by_id",
        figure: "`GET /products/{id}`",
        script: r#"
local products = ids("products")
request = function()
  return wrk.format("GET", "/products/" .. products[math.random(#products)])
end
"#,
        per_connection: false,
    },
    Phase {
        name: "create",
        figure: "`POST /commands/orders`",
        script: r#"
request = function()
  return wrk.format("POST", "/commands/orders", json, new_order())
end
"#,
        per_connection: false,
    },
    Phase {
        name: "create_confirm",
        figure: "create -> confirm (flows/s)",
        script: r#"
-- This thread's one connection: the order it placed and has yet to confirm.
local placed = nil
request = function()
  if placed then
    return wrk.format("POST", "/commands/orders/" .. placed .. "/confirm", json,
      '{"payment_token":"tok_visa"}')
  end
  return wrk.format("POST", "/commands/orders", json, new_order())
end
response = function(status, headers, body)
  if placed then
    if status == 202 then flows = flows + 1 end
    placed = nil
  elseif status == 202 then
    placed = body:match('"order_id":"([^"]+)"')
  end
end
"#,
        per_connection: true,
    },
];

/// What every script shares: seeded ids, per-thread random seeds, a random new order, and
/// a machine-readable summary from `done()`.
const PRELUDE: &str = r#"-- Written by `cargo xtask bench`; run by wrk.
local dir = [[{dir}]]
function ids(name)
  local all = {}
  for line in io.lines(dir .. "/" .. name .. ".txt") do all[#all + 1] = line end
  return all
end
json = { ["Content-Type"] = "application/json" }
local users, products
function new_order()
  users = users or ids("users")
  products = products or ids("products")
  local lines, items, seen = math.random(math.min(3, #products)), {}, {}
  while #items < lines do
    local p = products[math.random(#products)]
    if not seen[p] then
      seen[p] = true
      items[#items + 1] = string.format('{"product_id":"%s","quantity":%d}', p, math.random(3))
    end
  end
  return string.format('{"user_id":"%s","items":[%s]}', users[math.random(#users)],
    table.concat(items, ","))
end
flows = 0
local threads, next_id = {}, 1
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  threads[#threads + 1] = thread
end
function init(args)
  math.randomseed(tid * 7919 + os.time())
end
function done(summary, latency, requests)
  local flows, e = 0, summary.errors
  for _, thread in ipairs(threads) do flows = flows + (thread:get("flows") or 0) end
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d status_errors=%d socket_errors=%d p50_us=%d p99_us=%d flows=%d\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), flows))
end
"#;

/// What one wrk run measured.
struct WrkRun {
    command: String,
    requests: u64,
    elapsed: Duration,
    /// Non-2xx/3xx answers, and connect/read/write/timeout errors.
    status_errors: u64,
    socket_errors: u64,
    p50: Duration,
    p99: Duration,
    /// Completed create -> confirm flows (the flow script only).
    flows: u64,
}

impl WrkRun {
    fn summary(&self) -> String {
        format!(
            "{:.0} rps, p50 {:.1} ms, p99 {:.1} ms, {} errors of {}",
            self.per_second(),
            ms(self.p50),
            ms(self.p99),
            self.errors(),
            self.requests
        )
    }

    fn errors(&self) -> u64 {
        self.status_errors + self.socket_errors
    }

    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn flows_per_second(&self) -> f64 {
        self.flows as f64 / self.elapsed.as_secs_f64()
    }
}

fn run_wrk(wrk: &Path, plan: &Plan, address: &str, out: &Path, phase: &Phase) -> Result<WrkRun> {
    let script = out.join(format!("{}.lua", phase.name));
    let prelude = PRELUDE.replace("{dir}", &out.display().to_string());
    fs::write(&script, prelude + phase.script)
        .with_context(|| format!("writing {}", script.display()))?;
    let connections = plan.concurrency;
    let threads = if phase.per_connection {
        connections
    } else {
        cores().min(connections)
    };
    let mut command = Command::new(wrk);
    command
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", plan.duration.as_secs()))
        .args(["--timeout", "10s", "--latency", "-s"])
        .arg(&script)
        .arg(format!("http://{address}/"));
    let described = describe(&command).replace(&out.display().to_string(), "target/bench");
    eprintln!("xtask: {described}");
    let output = command
        .output()
        .with_context(|| format!("running {described}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    fs::write(out.join(format!("{}.txt", phase.name)), stdout.as_bytes())?;
    ensure!(
        output.status.success(),
        "{described} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let run = parse_wrk(&stdout, described)?;
    ensure!(
        run.requests > 0 && run.errors() < run.requests,
        "{}: {} requests, all failed ({} non-2xx, {} socket errors); see target/bench/{}.txt",
        phase.name,
        run.requests,
        run.status_errors,
        run.socket_errors,
        phase.name
    );
    if run.errors() > 0 {
        eprintln!(
            "xtask: warning: {}: {} of {} requests failed",
            phase.name,
            run.errors(),
            run.requests
        );
    }
    Ok(run)
}

/// The `WRK_RESULT key=value ...` line of the scripts' `done()`.
fn parse_wrk(stdout: &str, command: String) -> Result<WrkRun> {
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("WRK_RESULT "))
        .context("wrk printed no WRK_RESULT line")?;
    let fields: BTreeMap<&str, u64> = line
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| Ok((key, value.parse()?)))
        .collect::<Result<_>>()
        .with_context(|| format!("parsing {line:?}"))?;
    let field = |key: &str| {
        fields
            .get(key)
            .copied()
            .with_context(|| format!("no {key} in {line:?}"))
    };
    Ok(WrkRun {
        command,
        requests: field("requests")?,
        elapsed: Duration::from_micros(field("duration_us")?),
        status_errors: field("status_errors")?,
        socket_errors: field("socket_errors")?,
        p50: Duration::from_micros(field("p50_us")?),
        p99: Duration::from_micros(field("p99_us")?),
        flows: field("flows")?,
    })
}

// ---------------------------------------------------------------------------------------
// pgbench

/// pgbench's figures, transactions per second.
struct Pgbench {
    select_only: f64,
    tpcb: f64,
    commands: Vec<String>,
}

/// The system's pgbench.
fn pgbench() -> Result<PathBuf> {
    let candidates = std::iter::once(PathBuf::from("/usr/bin/pgbench")).chain(
        fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|version| version.path().join("bin").join("pgbench")),
    );
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "pgbench is missing: install Debian's postgresql-client (sudo apt-get install postgresql-client)"
    )
}

fn run_pgbench(pgbench: &Path, plan: &Plan, url: &str, out: &Path) -> Result<Pgbench> {
    let config: tokio_postgres::Config = url.parse().context("parsing the database url")?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres").to_owned();
    let database = config
        .get_dbname()
        .context("a url without a database")?
        .to_owned();
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let pgbench_command = |args: &[String]| {
        let mut command = Command::new(pgbench);
        // Without TLS, as emporium's own connections (the system's server may offer it, and
        // pgbench would take it).
        command
            .env("PGSSLMODE", "disable")
            .args(["-h", &host, "-p", &port.to_string(), "-U", &user])
            .args(args)
            .arg(&database);
        if let Some(password) = &password {
            command.env("PGPASSWORD", password);
        }
        command
    };
    let clients = plan.concurrency.to_string();
    let seconds = plan.duration.as_secs().to_string();
    let threads = cores().min(plan.concurrency).to_string();
    let init = ["-i", "-q", "-s", &plan.pgbench_scale.to_string()].map(str::to_owned);
    let select_only = ["-S", "-c", &clients, "-j", &threads, "-T", &seconds].map(str::to_owned);
    let tpcb = ["-c", &clients, "-j", &threads, "-T", &seconds].map(str::to_owned);

    let mut commands = Vec::new();
    let described = |command: &Command| format!("PGSSLMODE=disable {}", describe(command));
    let mut init_command = pgbench_command(&init);
    eprintln!("xtask: {}", described(&init_command));
    commands.push(described(&init_command));
    let output = init_command.output().context("running pgbench -i")?;
    ensure!(
        output.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut tps = Vec::new();
    for (name, args) in [("select_only", &select_only[..]), ("tpcb", &tpcb[..])] {
        let mut command = pgbench_command(args);
        let described = described(&command);
        eprintln!("xtask: {described}");
        let output = command
            .output()
            .with_context(|| format!("running {described}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        fs::write(out.join(format!("pgbench-{name}.txt")), stdout.as_bytes())?;
        ensure!(
            output.status.success(),
            "{described} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        tps.push(parse_tps(&stdout).with_context(|| format!("reading {described}"))?);
        commands.push(described);
    }
    Ok(Pgbench {
        select_only: tps[0],
        tpcb: tps[1],
        commands,
    })
}

/// `tps = 1234.567 (without initial connection time)`.
fn parse_tps(stdout: &str) -> Result<f64> {
    stdout
        .lines()
        .filter(|line| line.contains("without initial connection time"))
        .find_map(|line| line.strip_prefix("tps = ")?.split_whitespace().next())
        .context("no `tps = ... (without initial connection time)` line")?
        .parse()
        .context("tps is not a number")
}

// ---------------------------------------------------------------------------------------
// Machine

/// Where the run happened.
struct Machine {
    cores: usize,
    memory_gib: f64,
    cpu: String,
    postgres: String,
    date: String,
    commit: String,
}

impl Machine {
    async fn read(root: &Path, url: &str) -> Result<Machine> {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
            .map_or("unknown".to_owned(), |(_, model)| model.trim().to_owned());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let client = connect(url).await?;
        let mut postgres = Vec::new();
        for setting in [
            "server_version",
            "shared_buffers",
            "max_connections",
            "synchronous_commit",
        ] {
            let row = client.query_one(&format!("SHOW {setting}"), &[]).await?;
            postgres.push(format!("{setting} {}", row.get::<_, String>(0)));
        }
        Ok(Machine {
            cores: cores(),
            memory_gib: memory_kib / 1024.0 / 1024.0,
            cpu,
            postgres: postgres.join(", "),
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            commit: commit(root),
        })
    }
}

/// The checked-out commit, and whether the tree differs from it.
fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) if git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty()) => {
            format!("{commit} with uncommitted changes")
        }
        Some(commit) => commit,
        None => "unknown".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// Report

/// Everything a run measured.
struct Results {
    smoke: bool,
    plan: String,
    server_env: String,
    ready: Duration,
    restart_ready: Duration,
    seeded: Vec<Seeded>,
    wrk: BTreeMap<&'static str, WrkRun>,
    lag: Option<Lag>,
    rebuild: Option<Rebuild>,
    rss_kib: u64,
    pgbench: Option<Pgbench>,
    machine: Option<Machine>,
}

/// A row of the table.
struct Row {
    figure: String,
    value: String,
    reference: String,
    ratio: String,
    target: String,
    verdict: &'static str,
}

impl Row {
    fn info(figure: impl Into<String>, value: impl Into<String>) -> Row {
        Row {
            figure: figure.into(),
            value: value.into(),
            reference: String::new(),
            ratio: String::new(),
            target: String::new(),
            verdict: "",
        }
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

impl Results {
    fn new(plan: &Plan) -> Results {
        Results {
            smoke: plan.smoke,
            plan: format!(
                "{} users, {} products, {} orders; {} connections, {} s per phase, {} lag probes, pgbench scale {}",
                plan.users,
                plan.products,
                plan.orders,
                plan.concurrency,
                plan.duration.as_secs(),
                plan.probes,
                plan.pgbench_scale
            ),
            server_env: plan
                .server_env
                .iter()
                .filter(|(k, _)| *k != "ADMIN_TOKEN")
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            ready: Duration::ZERO,
            restart_ready: Duration::ZERO,
            seeded: Vec::new(),
            wrk: BTreeMap::new(),
            lag: None,
            rebuild: None,
            rss_kib: 0,
            pgbench: None,
            machine: None,
        }
    }

    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let pgbench = self.pgbench.as_ref();
        let (select_only, tpcb) = pgbench.map_or((0.0, 0.0), |p| (p.select_only, p.tpcb));
        for phase in &PHASES {
            let Some(run) = self.wrk.get(phase.name) else {
                continue;
            };
            let errors = if run.errors() > 0 {
                format!(", **{} errors** of {}", run.errors(), run.requests)
            } else {
                String::new()
            };
            let latency = format!("p50 {:.1} ms, p99 {:.1} ms", ms(run.p50), ms(run.p99));
            let clean = run.errors() == 0;
            let row = match phase.name {
                "create" => {
                    let ratio = run.per_second() / tpcb;
                    Row {
                        figure: phase.figure.to_owned(),
                        value: format!("{:.0} rps, {latency}{errors}", run.per_second()),
                        reference: format!("tpcb-like {tpcb:.0} tps"),
                        ratio: format!("{ratio:.2}"),
                        target: ">= 0.8, p99 <= 50 ms".to_owned(),
                        verdict: verdict(
                            clean && ratio >= 0.8 && run.p99 <= Duration::from_millis(50),
                        ),
                    }
                }
                "create_confirm" => Row {
                    figure: phase.figure.to_owned(),
                    value: format!(
                        "{:.0} flows/s ({:.0} rps), {latency}{errors}",
                        run.flows_per_second(),
                        run.per_second()
                    ),
                    reference: format!("tpcb-like {tpcb:.0} tps"),
                    ratio: format!("{:.2}", run.flows_per_second() / tpcb),
                    target: String::new(),
                    verdict: if clean { "" } else { "**errors**" },
                },
                _ => {
                    let ratio = run.per_second() / select_only;
                    Row {
                        figure: phase.figure.to_owned(),
                        value: format!("{:.0} rps, {latency}{errors}", run.per_second()),
                        reference: format!("-S {select_only:.0} tps"),
                        ratio: format!("{ratio:.2}"),
                        target: ">= 0.6".to_owned(),
                        verdict: verdict(clean && ratio >= 0.6),
                    }
                }
            };
            rows.push(row);
        }
        if let Some(lag) = &self.lag {
            let p99 = load::quantile(&lag.samples, 0.99);
            let mut value = format!(
                "p50 {:.1} ms, p99 {:.1} ms ({} probes; placing {:.0}/s of {:.0}/s asked",
                ms(load::quantile(&lag.samples, 0.5)),
                ms(p99),
                lag.samples.len(),
                lag.achieved,
                lag.offered
            );
            // More than a second of placements still unapplied when they stop: behind.
            if lag.unseen > 0 || lag.backlog as f64 > lag.achieved {
                let _ = write!(
                    value,
                    "; **{} probes not seen within the phase, {} events behind at its end: \
                     the projection falls behind**",
                    lag.unseen, lag.backlog
                );
            }
            if lag.errors + lag.skipped > 0 {
                let _ = write!(
                    value,
                    "; **{} background placements failed, {} not sent (256 waiting: the server fell behind)**",
                    lag.errors, lag.skipped
                );
                if let Some(error) = &lag.first_error {
                    let _ = write!(value, " (first failure: {})", error.replace('|', "/"));
                }
            }
            value.push(')');
            rows.push(Row {
                figure: "projection lag at 80 % of max placement rate".to_owned(),
                value,
                reference: String::new(),
                ratio: String::new(),
                target: "p99 <= 50 ms".to_owned(),
                verdict: verdict(
                    p99 <= Duration::from_millis(50) && lag.unseen == 0 && lag.errors == 0,
                ),
            });
        }
        if let Some(rebuild) = &self.rebuild {
            rows.push(Row {
                figure: "read-model rebuild".to_owned(),
                value: format!(
                    "{:.0} events/s ({} events in {:.1} s)",
                    rebuild.per_second(),
                    rebuild.events,
                    rebuild.elapsed.as_secs_f64()
                ),
                reference: String::new(),
                ratio: String::new(),
                target: ">= 50000 events/s".to_owned(),
                verdict: verdict(rebuild.per_second() >= 50_000.0),
            });
        }
        let rss_mb = self.rss_kib as f64 / 1024.0;
        rows.push(Row {
            figure: "server peak RSS (VmHWM)".to_owned(),
            value: format!("{rss_mb:.1} MiB"),
            reference: String::new(),
            ratio: String::new(),
            target: "<= 100 MB".to_owned(),
            verdict: verdict(self.rss_kib as f64 * 1024.0 <= 100e6),
        });
        for (figure, ready) in [
            (
                "ready (fresh database: creates and migrates it)",
                self.ready,
            ),
            (
                "ready (restart over the seeded database)",
                self.restart_ready,
            ),
        ] {
            rows.push(Row {
                figure: figure.to_owned(),
                value: format!("{:.0} ms", ms(ready)),
                reference: String::new(),
                ratio: String::new(),
                target: "<= 1 s".to_owned(),
                verdict: verdict(ready <= Duration::from_secs(1)),
            });
        }
        for seeded in &self.seeded {
            rows.push(Row::info(
                format!("seeding {}", seeded.what),
                format!(
                    "{:.0} {}/s ({} in {:.1} s, {:.0} requests/s)",
                    seeded.per_second(),
                    seeded.what,
                    seeded.count,
                    seeded.elapsed.as_secs_f64(),
                    seeded.requests as f64 / seeded.elapsed.as_secs_f64()
                ),
            ));
        }
        if let Some(pgbench) = pgbench {
            rows.push(Row::info(
                "pgbench -S (select-only)",
                format!("{:.0} tps", pgbench.select_only),
            ));
            rows.push(Row::info(
                "pgbench (tpcb-like)",
                format!("{:.0} tps", pgbench.tpcb),
            ));
        }
        rows
    }

    /// The Markdown report: run facts, the table, the commands.
    fn report(&self) -> String {
        let mut report = String::new();
        let out = &mut report;
        if let Some(m) = &self.machine {
            let _ = writeln!(out, "| run | |\n|---|---|");
            let _ = writeln!(out, "| date | {} |", m.date);
            let _ = writeln!(out, "| commit | {} |", m.commit);
            let _ = writeln!(
                out,
                "| machine | {} cores ({}), {:.1} GiB memory |",
                m.cores, m.cpu, m.memory_gib
            );
            let _ = writeln!(out, "| Postgres | {} |", m.postgres);
            let _ = writeln!(
                out,
                "| server | release build, {}, `RUST_LOG` default (info) |",
                self.server_env
            );
            let _ = writeln!(out, "| run | {} |", self.plan);
            let _ = writeln!(out);
        }
        let _ = writeln!(
            out,
            "| figure | emporium | pgbench reference | ratio | target | |\n|---|---|---|---|---|---|"
        );
        for row in self.rows() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                row.figure, row.value, row.reference, row.ratio, row.target, row.verdict
            );
        }
        let _ = writeln!(out, "\nCommands (paths under `target/bench/`):\n\n```sh");
        let _ = writeln!(
            out,
            "cargo xtask bench{}",
            if self.smoke { " --smoke" } else { "" }
        );
        for phase in &PHASES {
            if let Some(run) = self.wrk.get(phase.name) {
                let _ = writeln!(out, "{}", run.command);
            }
        }
        if let Some(pgbench) = &self.pgbench {
            for command in &pgbench.commands {
                let _ = writeln!(out, "{command}");
            }
        }
        let _ = writeln!(out, "```");
        report
    }
}

/// Puts `report` between the markers of BENCHMARKS.md, keeping what is around them (the
/// analysis); creates the file if there is none.
fn write_benchmarks(path: &Path, report: &str) -> Result<()> {
    let generated = format!("{BEGIN}\n{report}{END}");
    let text = match fs::read_to_string(path) {
        Ok(text) => match (text.find(BEGIN), text.find(END)) {
            (Some(begin), Some(end)) if begin < end => {
                format!("{}{generated}{}", &text[..begin], &text[end + END.len()..])
            }
            _ => bail!(
                "{} has no bench markers; move it away or add `{BEGIN}` and `{END}`",
                path.display()
            ),
        },
        Err(_) => format!(
            "# Benchmarks\n\n`cargo xtask bench` measures emporium beside Postgres's own limit \
             (pgbench) on the same machine; the part between the markers is its latest run.\n\n\
             {generated}\n\n## What bounds each figure\n\n(Not written yet.)\n"
        ),
    };
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::env;

    use super::*;

    #[test]
    fn database_urls() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/emporium",
                "postgres://postgres@127.0.0.1:5432/x",
            ),
            (
                "postgres://u:p@h/db?sslmode=disable",
                "postgres://u:p@h/x?sslmode=disable",
            ),
            ("postgres://h:1", "postgres://h:1/x"),
        ];
        for (url, expected) in cases {
            assert_eq!(with_database(url, "x").unwrap(), expected);
        }
    }

    #[test]
    fn parses_tools_output() {
        let wrk = "Running 1s test\nWRK_RESULT requests=10 duration_us=2000000 status_errors=1 \
                   socket_errors=0 p50_us=1500 p99_us=9000 flows=3\n";
        let run = parse_wrk(wrk, String::new()).unwrap();
        assert_eq!((run.requests, run.errors(), run.flows), (10, 1, 3));
        assert_eq!(run.per_second(), 5.0);
        assert_eq!(run.p99, Duration::from_millis(9));
        assert!(parse_wrk("no summary", String::new()).is_err());

        let pgbench = "number of failed transactions: 0 (0.000%)\nlatency average = 1.2 ms\n\
                       initial connection time = 5.1 ms\ntps = 8123.456789 (without initial connection time)\n";
        assert_eq!(parse_tps(pgbench).unwrap(), 8123.456789);
        assert!(parse_tps("tps = 1 (including connections establishing)").is_err());
    }

    #[test]
    fn keeps_the_analysis_around_the_markers() {
        let dir = env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("BENCHMARKS.md");
        let _ = fs::remove_file(&path);
        write_benchmarks(&path, "first\n").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace("(Not written yet.)", "analysis")).unwrap();
        write_benchmarks(&path, "second\n").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("second") && text.contains("analysis") && !text.contains("first"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
