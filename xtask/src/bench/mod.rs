//! `cargo xtask bench [--smoke] [--duration SECS] [--concurrency N]`: emporium's numbers
//! beside the floor (the same routes written the shortest way, `xtask/floor`) and beside
//! the database's own limit (pgbench), on the same machine, in the same run.
//!
//! Phases, in order (everything it writes goes to `target/bench/`):
//! 1. **Build and start.** `cargo build --release -p emporium`, then `-p bench-floor` (one
//!    build each, so the floor's dependencies do not change emporium's build); a Postgres
//!    (`db::ensure`); a fresh database `emporium_bench` (dropped and created); the server,
//!    sized for the machine. Measures the time from process start to `/health/ready` = 200
//!    (with the migrations of the empty database, and again at the end on a restart over
//!    the seeded one).
//! 2. **Seed** (`crate::seed`): users (a tenth of the orders), products with ample stock,
//!    orders of which a fixed share is confirmed, shipped, delivered or cancelled; in bulk
//!    by SQL (the same rows and events as through the API), or through the API with
//!    `--seed-via-api`. Then `VACUUM ANALYZE`, as autovacuum would do in a while.
//! 3. **The floor** (`floor.rs`): `bench-floor` starts on the same database with
//!    emporium's worker count and pool size, copies the tables a placement writes into its
//!    own schema `floor`, and must answer what emporium answers (the same orders, pages,
//!    products, unknown ids, a placement and three refused ones) or the run fails. Then
//!    a `CHECKPOINT`, so that the one the seed's WAL calls for does not run under the rounds.
//! 4. **Throughput** with `wrk` (Debian's, installed with apt if missing and root), one Lua
//!    script per phase (`bench/wrk/*.lua`, after `prelude.lua`): the order by id, a user's
//!    orders, a product by id, order placement, and placement then confirmation (a state
//!    machine per connection in wrk's `response()` callback; one wrk thread per connection
//!    so that thread state is connection state). Each phase runs in short rounds of a fixed
//!    duration and concurrency, emporium and the floor by turns (`rounds.rs`: a warm-up
//!    each, then ABBA), waiting after every round for emporium's projection to catch up;
//!    each side's figure is the median of its rounds. The floor has no confirm: the flow
//!    runs on emporium alone and is compared with the floor's placement rate. Scripts report
//!    through wrk's `done()`: requests, latency p50/p99, non-2xx and socket errors. Then the
//!    floor stops and its schema is dropped.
//! 5. **Projection lag**: a rate-limited Rust driver places orders at 80 % of the measured
//!    placement rate while probes place an order and poll the read model until it shows.
//! 6. **Rebuild** of the read model over the whole log: events/s.
//! 7. **Peak RSS** of the server (`VmHWM`; read after the seed, the wrk phases, the lag and
//!    the rebuild too, so the report says which stage reached it), then the restart's ready
//!    time.
//! 8. **pgbench** in its own database at the same client count: `-S` (select-only) and the
//!    default tpcb-like script, as the reference each figure is divided by.
//! 9. **Report**: a table on stdout and in `BENCHMARKS.md` (between markers, so the
//!    analysis written under it survives a new run): each figure, the floor's, emporium /
//!    floor against its target, pgbench's and both ratios to it; each round's rate under
//!    it. `--smoke` (tiny data, rounds of 1 s, for CI) writes `target/bench/smoke.md`
//!    instead. Missing a target never fails the command; a harness that breaks (a server
//!    does not start, a round gets only errors, the floor answers otherwise than emporium)
//!    does.
//!
//! The files, one concern each: `plan.rs` (a run's sizes), `phases.rs` (the server and the
//! phases driven through the API: start, seed, lag, rebuild, RSS), `floor.rs` (the floor's
//! start and agreement check), `rounds.rs` (the order of the rounds, their medians),
//! `wrk.rs` (the wrk driver, its scripts and the targets), `pgbench.rs` (the reference),
//! `report.rs` (the table and BENCHMARKS.md); the server and its database are
//! `crate::rig`'s, where it ran `crate::machine`'s.

mod floor;
mod pgbench;
mod phases;
mod plan;
mod report;
mod rounds;
mod wrk;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::machine::Machine;
use crate::rig::{Postgres, Rig};
use crate::server::target_directory;
use crate::{apt, cargo, db, succeed};
use floor::Floor;
use phases::Bench;
use plan::Plan;
use report::{Results, markers_for, write_benchmarks};
use rounds::{Measured, schedule};
use wrk::{PHASES, Side, run_wrk};

const ADMIN_TOKEN: &str = "bench-admin-token";
/// pgbench's database, with the process id (`Rig::database_name`), beside the rig's own
/// `emporium_bench_<pid>`.
const PGBENCH_DATABASE: &str = "emporium_pgbench";

/// What `cargo xtask bench` was asked for.
pub(crate) struct Options {
    pub(crate) smoke: bool,
    /// Seconds per load phase (default 10, smoke 2).
    pub(crate) duration: Option<u64>,
    pub(crate) concurrency: usize,
    /// Orders of the data set (default 100000, smoke 300).
    pub(crate) orders: Option<usize>,
    /// Seed through the API instead of in bulk.
    pub(crate) seed_via_api: bool,
}

pub(crate) fn run(root: &Path, options: &Options) -> Result<()> {
    let plan = Plan::new(options);
    let tools = Tools {
        wrk: apt::ensure_installed(Path::new("/usr/bin/wrk"), "wrk")?,
        pgbench: pgbench::find()?,
    };
    let bench = Bench {
        rig: Rig::new(root, "bench", ADMIN_TOKEN, Postgres::Shared)?,
        plan,
    };
    // A build of its own: built with emporium, the floor's dependencies' features would be
    // unified into emporium's build.
    eprintln!("xtask: cargo build --release -p bench-floor");
    succeed(&mut cargo(
        root,
        &["build", "--release", "-p", "bench-floor"],
    ))?;
    let floor = Floor::new(target_directory(root)?.join("release").join("bench-floor"))?;
    let pgbench_database = Rig::database_name(PGBENCH_DATABASE);
    let measured = measure(root, &bench, &floor, &tools, &pgbench_database);
    bench.rig.clean_up(&[&pgbench_database]);
    report(root, &bench, &measured?)
}

/// `cargo xtask seed`: the data set of a run of `options`' size seeded in bulk into a
/// database of its own, which is kept, with the wrk scripts, ids and staff token beside it
/// in `target/seed/`; prints how to serve it and load it, for profiling one route or flow
/// by hand.
pub(crate) fn seed_only(root: &Path, options: &Options) -> Result<()> {
    let bench = Bench {
        rig: Rig::new(root, "seed", ADMIN_TOKEN, Postgres::Shared)?,
        plan: Plan::new(options),
    };
    let (server, _) = bench.start("server.log")?;
    bench.seed(&mut Results::new(&bench.plan))?;
    drop(server);
    let rig = &bench.rig;
    for phase in &PHASES {
        wrk::write_script(&rig.out, phase)?;
    }
    let env: Vec<String> = bench
        .plan
        .server_env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("DATABASE_URL={}", rig.url);
    eprintln!(
        "xtask: seeded and kept; serve it with\n  DATABASE_URL={} {} {} serve\n\
         load it with a script of {}, e.g.\n  wrk -t16 -c16 -d10s -s {}/create_confirm.lua http://127.0.0.1:8080/\n\
         and drop it with `dropdb` when done",
        rig.url,
        env.join(" "),
        rig.binary.display(),
        rig.out.display(),
        rig.out.display(),
    );
    Ok(())
}

/// Every phase, against the servers and databases of `bench`; pgbench in a database of
/// its own.
fn measure(
    root: &Path,
    bench: &Bench,
    floor: &Floor,
    tools: &Tools,
    pgbench_database: &str,
) -> Result<Results> {
    let rig = &bench.rig;
    let mut results = Results::new(&bench.plan);
    let (server, ready) = bench.start("server.log")?;
    results.ready = ready;
    let catalog = bench.seed(&mut results)?;
    let peak = |stage| -> Result<(&'static str, u64)> { Ok((stage, server.memory_kib("VmHWM")?)) };
    results.peaks.push(peak("the seed")?);
    let floor_server = floor.start(bench)?;
    floor.check_agreement(bench, &catalog)?;
    rig.block_on(phases::maintain(&rig.url, phases::CHECKPOINT))?;
    let before = crate::machine::cpu_times()?;
    for phase in &PHASES {
        let mut measured = Measured::default();
        for (side, round) in schedule(bench.plan.rounds, phase.floor) {
            let address = match side {
                Side::Emporium => &rig.address,
                Side::Floor => &floor.address,
            };
            let at = (side, address.as_str());
            let run = run_wrk(&tools.wrk, &bench.plan, at, round, &rig.out, phase)?;
            eprintln!(
                "xtask: {} {} {round}: {}",
                phase.name,
                side.name(),
                run.summary()
            );
            measured.push((side, round), run);
            // The next round, of either side, starts with emporium's projection quiet.
            bench.caught_up()?;
        }
        eprintln!(
            "xtask: {}: emporium {}",
            phase.name,
            measured.emporium.summary()
        );
        if let Some(rounds) = &measured.floor {
            eprintln!("xtask: {}: floor {}", phase.name, rounds.summary());
        }
        results.wrk.insert(phase.name, measured);
    }
    results.steal = Some(crate::machine::cpu_times()?.steal_since(&before));
    results.peaks.push(peak("the wrk phases")?);
    drop(floor_server);
    Floor::drop_schema(bench)?;
    let placements = results.wrk["create"].emporium.per_second();
    results.lag = Some(bench.lag(&catalog, placements)?);
    results.peaks.push(peak("the lag")?);
    results.rebuild = Some(bench.rebuild()?);
    results.peaks.push(peak("the rebuild")?);
    results.rss_kib = server.memory_kib("VmHWM")?;
    drop(server);
    let (server, ready) = bench.start("restart.log")?;
    results.restart_ready = ready;
    drop(server);

    let pgbench_url = rig.block_on(db::recreate_database(&rig.postgres, pgbench_database))?;
    results.pgbench = Some(pgbench::run(
        &tools.pgbench,
        &bench.plan,
        &pgbench_url,
        &rig.out,
    )?);
    results.machine = Some(rig.block_on(Machine::read(root, &rig.url))?);
    Ok(results)
}

/// Prints the report and writes it where it belongs.
fn report(root: &Path, bench: &Bench, results: &Results) -> Result<()> {
    let report = results.report();
    println!("{report}");
    if bench.plan.smoke {
        let path = bench.rig.out.join("smoke.md");
        fs::write(&path, format!("# Benchmark smoke run\n\n{report}"))?;
        eprintln!("xtask: bench --smoke done; report in {}", path.display());
    } else if let Some(markers) = markers_for(bench.plan.orders) {
        let path = root.join("BENCHMARKS.md");
        write_benchmarks(&path, markers, &report)?;
        eprintln!("xtask: bench done; report in {}", path.display());
    } else {
        let path = bench
            .rig
            .out
            .join(format!("orders-{}.md", bench.plan.orders));
        fs::write(&path, format!("# Benchmark run\n\n{report}"))?;
        eprintln!("xtask: bench done; report in {}", path.display());
    }
    Ok(())
}

struct Tools {
    wrk: PathBuf,
    pgbench: PathBuf,
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
