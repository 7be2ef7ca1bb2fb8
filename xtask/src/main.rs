//! The project's automation, run as `cargo xtask <command>` (see `cargo xtask --help`).
//!
//! Everything a developer or CI does goes through here: a database, migrations, running
//! the server, tests, and the checks that keep the modules' boundaries.
#![allow(clippy::print_stdout)]

mod apt;
mod bench;
mod catalog;
mod chaos;
mod check;
mod db;
mod docs;
mod fuzz;
mod load;
mod machine;
mod markers;
mod migration;
mod rig;
mod seed;
mod server;
mod soak;

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "emporium's automation"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Make sure a Postgres answers for DATABASE_URL (else start a private one in
    /// target/pg) and print its URL.
    Db,
    /// Apply pending migrations (of every schema, or of one).
    Migrate {
        /// Only this schema (users, products, orders, orders_read, payments); `--module` is
        /// the old spelling.
        #[arg(long, alias = "module")]
        schema: Option<String>,
    },
    /// Create an empty migration: migrations/SCHEMA/<timestamp>_NAME/{up,down}.sql.
    NewMigration {
        /// The schema it runs in: a folder under migrations/.
        schema: String,
        /// snake_case: [a-z0-9_]+.
        name: String,
    },
    /// Serve the API (release build) against the database.
    Run,
    /// `cargo test --workspace` against the database; arguments after `--` go to cargo test.
    Test {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Formatting, clippy, and the module boundary rules.
    Check,
    /// Write the event catalog (docs/asyncapi.json, docs/events.md) and the module diagram
    /// in ARCHITECTURE.md from the code; `--check` fails instead when one is stale.
    Docs {
        #[arg(long)]
        check: bool,
    },
    /// Validate docs/asyncapi.json with the AsyncAPI parser (@asyncapi/parser, from npm).
    Asyncapi,
    /// Load the API reference (/docs) in headless Chromium and check that it renders every
    /// operation; leaves a screenshot in target/docs.png.
    DocsCheck,
    /// The OpenAPI document against the server: schemathesis (`--checks all`) on a debug
    /// build with seeded data, and a flow through a client generated from the document.
    Fuzz,
    /// Crash the running system (one to three servers on one database: kill -9 one, two or
    /// all of them, at a random moment or while payment gateway calls are in flight, the
    /// others serving on; or crash Postgres) under a mixed load spread over the servers,
    /// round after round, and check the contract's invariants after each has settled.
    Chaos {
        /// How many rounds.
        #[arg(long, default_value_t = 20)]
        rounds: u32,
        /// Replay a run: the seed a run printed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Benchmark a release build (seeded data, wrk, projection lag, rebuild, RSS, ready
    /// time) beside the floor (the same routes written the shortest way) and pgbench on the
    /// same machine; writes BENCHMARKS.md.
    Bench {
        /// Tiny data and short phases, to check the harness (CI); writes
        /// target/bench/smoke.md and never fails on a timing.
        #[arg(long)]
        smoke: bool,
        /// Seconds per load phase (default 10, with --smoke 2); each server's share of a wrk
        /// phase, in rounds of 2 s (1 s).
        #[arg(long)]
        duration: Option<u64>,
        /// Connections of every load phase, and pgbench clients.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Orders of the data set (default 100000, with --smoke 300), with a tenth as many
        /// customers; 100000 and 1000000 each have their part of BENCHMARKS.md, any other
        /// size writes only target/bench/.
        #[arg(long, value_parser = clap::value_parser!(u64).range(20..))]
        orders: Option<u64>,
        /// Seed through the API, every order placed and moved along by HTTP requests (about
        /// 130 orders/s here), instead of the bulk seed, which writes the same rows and
        /// events by SQL.
        #[arg(long)]
        seed_via_api: bool,
    },
    /// Seed a database in bulk as `bench` does (a tenth as many customers as orders, 1000
    /// products) and keep it, with the bench's wrk scripts, ids and a staff token in
    /// target/seed/; prints its DATABASE_URL and how to serve and load it, for profiling.
    Seed {
        /// Orders of the data set.
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(20..))]
        orders: u64,
    },
    /// A steady mix of every kind of request at half the measured capacity, sampling
    /// memory, p99 per route, pool waits, table sizes and projection lag; fails when
    /// memory or a table that should stay bounded keeps growing, or p99 drifts up. A run
    /// of 10 minutes or more writes BENCHMARKS.md and docs/soak.svg, a shorter one only
    /// target/soak/.
    Soak {
        /// How long the steady load runs (after about 15 s of seeding and measuring).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
        minutes: u32,
    },
    /// `check`, `docs --check`, `asyncapi`, `test`, `fuzz`, `docs-check`, `bench --smoke`,
    /// `soak --minutes 1`, `chaos --rounds 3`: what CI runs.
    Ci,
}

fn main() -> ExitCode {
    run(Cli::parse().command).unwrap_or_else(|error| {
        eprintln!("xtask: error: {error:#}");
        ExitCode::FAILURE
    })
}

fn run(task: Task) -> Result<ExitCode> {
    let root = workspace_root();
    match task {
        Task::Db => {
            // The command's output, for `DATABASE_URL=$(cargo xtask db)`: the real url.
            println!("{}", db::ensure(&root)?.as_str());
            Ok(ExitCode::SUCCESS)
        }
        Task::Migrate { schema } => {
            let mut args = vec!["run", "-p", "emporium", "--", "migrate"];
            if let Some(schema) = &schema {
                args.extend(["--schema", schema]);
            }
            with_database(&root, &args)
        }
        Task::NewMigration { schema, name } => {
            migration::create(&root, &schema, &name)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Run => {
            let addr = env::var("HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
            println!("emporium will listen on http://{addr}");
            with_database(
                &root,
                &["run", "--release", "-p", "emporium", "--", "serve"],
            )
        }
        Task::Test { args } => test(&root, &args),
        Task::Check => {
            check::run(&root)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Chaos { rounds, seed } => chaos::run(&root, rounds, seed),
        Task::Fuzz => fuzz::run(&root),
        Task::Docs { check } => {
            catalog::docs(&root, check)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Asyncapi => {
            catalog::validate(&root)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::DocsCheck => {
            docs::run(&root)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Bench {
            smoke,
            duration,
            concurrency,
            orders,
            seed_via_api,
        } => {
            let options = bench::Options {
                smoke,
                duration,
                concurrency,
                orders: orders.map(|n| n as usize),
                seed_via_api,
            };
            bench::run(&root, &options)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Seed { orders } => {
            let options = bench::Options {
                smoke: false,
                duration: None,
                concurrency: 16,
                orders: Some(orders as usize),
                seed_via_api: false,
            };
            bench::seed_only(&root, &options)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Soak { minutes } => soak::run(&root, minutes),
        Task::Ci => {
            check::run(&root)?;
            catalog::docs(&root, true)?;
            catalog::validate(&root)?;
            let tested = test(&root, &[])?;
            if tested != ExitCode::SUCCESS {
                return Ok(tested);
            }
            let fuzzed = fuzz::run(&root)?;
            if fuzzed != ExitCode::SUCCESS {
                return Ok(fuzzed);
            }
            docs::run(&root)?;
            let smoke = bench::Options {
                smoke: true,
                duration: None,
                concurrency: 16,
                orders: None,
                seed_via_api: false,
            };
            bench::run(&root, &smoke)?;
            let soaked = soak::run(&root, 1)?;
            if soaked != ExitCode::SUCCESS {
                return Ok(soaked);
            }
            chaos::run(&root, 3, None)
        }
    }
}

fn test(root: &Path, extra: &[String]) -> Result<ExitCode> {
    let mut args = vec!["test", "--workspace"];
    args.extend(extra.iter().map(String::as_str));
    // The app suite checks `/metrics` with promtool (`apps/emporium/tests/it/metrics.rs`).
    let promtool = apt::ensure_tool_of(Path::new(PROMTOOL), "prometheus", "prometheus")?;
    // The publisher's tests start nats-servers of their own (crate `natsserver`): installed
    // here once, not by tests racing each other to apt.
    apt::ensure_installed(Path::new(NATS_SERVER), "nats-server")?;
    let url = db::ensure(root)?;
    let status = status(
        cargo(root, &args)
            .env("DATABASE_URL", url.as_str())
            .env("PROMTOOL", promtool),
    )?;
    Ok(exit_code(status))
}

/// Debian's, from its `prometheus` package.
const PROMTOOL: &str = "/usr/bin/promtool";
/// Debian's, from its `nats-server` package.
pub(crate) const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// Runs `cargo <args>` with DATABASE_URL pointing at a Postgres that answers, and passes
/// on its exit code.
fn with_database(root: &Path, args: &[&str]) -> Result<ExitCode> {
    let url = db::ensure(root)?;
    let status = status(cargo(root, args).env("DATABASE_URL", url.as_str()))?;
    Ok(exit_code(status))
}

/// The workspace this xtask belongs to (the parent of its own crate).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in a workspace folder")
        .to_path_buf()
}

/// `cargo <args>` in the workspace root, with the same cargo that runs us.
fn cargo(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")));
    command.args(args).current_dir(root);
    command
}

/// Runs `command` with inherited stdio and waits for it.
fn status(command: &mut Command) -> Result<ExitStatus> {
    command
        .status()
        .with_context(|| format!("running {}", describe(command)))
}

/// Runs `command` and fails unless it succeeds.
fn succeed(command: &mut Command) -> Result<()> {
    let status = status(command)?;
    if !status.success() {
        bail!("{} failed ({status})", describe(command));
    }
    Ok(())
}

/// `program args...`, for messages.
fn describe(command: &Command) -> String {
    let program = Path::new(command.get_program());
    let program = program.file_name().unwrap_or(program.as_os_str());
    std::iter::once(program)
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

fn exit_code(status: ExitStatus) -> ExitCode {
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        code => ExitCode::from(code.and_then(|c| u8::try_from(c).ok()).unwrap_or(1)),
    }
}
