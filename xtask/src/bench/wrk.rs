//! The wrk driver: fixed-duration, fixed-concurrency runs (one per round and server), each
//! phase its own Lua script (`wrk/<phase>.lua`) after a shared prelude (`wrk/prelude.lua`:
//! seeded ids, per-thread seeds, a random new order, and a `WRK_RESULT` summary line from
//! `done()`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use super::{ms, plan::Plan};
use crate::describe;
use crate::machine::cores;

/// One fixed-duration, fixed-concurrency wrk run.
pub(super) struct Phase {
    pub(super) name: &'static str,
    pub(super) figure: &'static str,
    pub(super) script: &'static str,
    /// A state machine per connection: one wrk thread per connection.
    pub(super) per_connection: bool,
    /// Whether the floor serves the phase's routes (it has no confirm).
    pub(super) floor: bool,
    /// The target, against the floor's rate (of `create` for the flow).
    pub(super) target: Target,
}

/// A phase's target: emporium's rate at least `ratio` x the floor's, and p99 at most
/// `p99_ms` when there is one.
pub(super) struct Target {
    pub(super) ratio: f64,
    pub(super) p99_ms: Option<u64>,
}

/// The server a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Emporium,
    Floor,
}

impl Side {
    pub(super) fn name(self) -> &'static str {
        match self {
            Side::Emporium => "emporium",
            Side::Floor => "floor",
        }
    }
}

pub(super) const PHASES: [Phase; 5] = [
    Phase {
        name: "order_by_id",
        figure: "`GET /queries/orders/{id}`",
        script: include_str!("wrk/order_by_id.lua"),
        per_connection: false,
        floor: true,
        target: Target {
            ratio: 0.9,
            p99_ms: Some(10),
        },
    },
    Phase {
        name: "orders_by_user",
        figure: "`GET /queries/orders?user_id=`",
        script: include_str!("wrk/orders_by_user.lua"),
        per_connection: false,
        floor: true,
        target: Target {
            ratio: 0.7,
            p99_ms: None,
        },
    },
    Phase {
        name: "product_by_id",
        figure: "`GET /products/{id}`",
        script: include_str!("wrk/product_by_id.lua"),
        per_connection: false,
        floor: true,
        target: Target {
            ratio: 0.9,
            p99_ms: None,
        },
    },
    Phase {
        name: "create",
        figure: "`POST /commands/orders`",
        script: include_str!("wrk/create.lua"),
        per_connection: false,
        floor: true,
        target: Target {
            ratio: 0.8,
            p99_ms: Some(50),
        },
    },
    Phase {
        name: "create_confirm",
        figure: "create -> confirm (flows/s)",
        script: include_str!("wrk/create_confirm.lua"),
        per_connection: true,
        floor: false,
        target: Target {
            ratio: 0.6,
            p99_ms: None,
        },
    },
];

/// What every script shares: seeded ids, per-thread random seeds, a random new order, and
/// a machine-readable summary from `done()`. `{dir}` becomes the folder of the id files.
const PRELUDE: &str = include_str!("wrk/prelude.lua");

/// What one wrk run measured.
pub(super) struct WrkRun {
    pub(super) command: String,
    pub(super) requests: u64,
    pub(super) elapsed: Duration,
    /// Non-2xx/3xx answers, and connect/read/write/timeout errors.
    pub(super) status_errors: u64,
    pub(super) socket_errors: u64,
    pub(super) p50: Duration,
    pub(super) p99: Duration,
    /// Completed create -> confirm flows (the flow script only).
    pub(super) flows: u64,
}

impl WrkRun {
    pub(super) fn summary(&self) -> String {
        format!(
            "{:.0} rps, p50 {:.1} ms, p99 {:.1} ms, {} errors of {}",
            self.per_second(),
            ms(self.p50),
            ms(self.p99),
            self.errors(),
            self.requests
        )
    }

    pub(super) fn errors(&self) -> u64 {
        self.status_errors + self.socket_errors
    }

    pub(super) fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub(super) fn flows_per_second(&self) -> f64 {
        self.flows as f64 / self.elapsed.as_secs_f64()
    }
}

/// Writes `phase`'s script (the prelude, then the phase's own) as `<out>/<phase>.lua`,
/// reading its ids and token from `out`; its path.
pub(super) fn write_script(out: &Path, phase: &Phase) -> Result<PathBuf> {
    let script = out.join(format!("{}.lua", phase.name));
    let prelude = PRELUDE.replace("{dir}", &out.display().to_string());
    fs::write(&script, prelude + phase.script)
        .with_context(|| format!("writing {}", script.display()))?;
    Ok(script)
}

/// One round of `phase` against `side` at `address`; its output in
/// `<out>/<phase>-<side>-<round>.txt`.
pub(super) fn run_wrk(
    wrk: &Path,
    plan: &Plan,
    (side, address): (Side, &str),
    round: usize,
    out: &Path,
    phase: &Phase,
) -> Result<WrkRun> {
    let script = write_script(out, phase)?;
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
        .arg(format!("-d{}s", plan.round.as_secs()))
        .args(["--timeout", "10s", "--latency", "-s"])
        .arg(&script)
        .arg(format!("http://{address}/"));
    let described = describe(&command).replace(&out.display().to_string(), "target/bench");
    eprintln!("xtask: {described}");
    let output = command
        .output()
        .with_context(|| format!("running {described}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let name = format!("{}-{}-{round}", phase.name, side.name());
    fs::write(out.join(format!("{name}.txt")), stdout.as_bytes())?;
    ensure!(
        output.status.success(),
        "{described} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let run = parse_wrk(&stdout, described)?;
    ensure!(
        run.requests > 0 && run.errors() < run.requests,
        "{name}: {} requests, all failed ({} non-2xx, {} socket errors); see target/bench/{name}.txt",
        run.requests,
        run.status_errors,
        run.socket_errors,
    );
    if run.errors() > 0 {
        eprintln!(
            "xtask: warning: {name}: {} of {} requests failed",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary_line() {
        let wrk = "Running 1s test\nWRK_RESULT requests=10 duration_us=2000000 status_errors=1 \
                   socket_errors=0 p50_us=1500 p99_us=9000 flows=3\n";
        let run = parse_wrk(wrk, String::new()).unwrap();
        assert_eq!((run.requests, run.errors(), run.flows), (10, 1, 3));
        assert_eq!(run.per_second(), 5.0);
        assert_eq!(run.p99, Duration::from_millis(9));
        assert!(parse_wrk("no summary", String::new()).is_err());
    }

    /// Every phase has a script, and the prelude defines what the scripts use.
    #[test]
    fn scripts_are_loaded() {
        for phase in &PHASES {
            assert!(
                phase.script.contains("request = function()"),
                "{}",
                phase.name
            );
        }
        for name in [
            "function ids(",
            "function new_order(",
            "function done(",
            "{dir}",
        ] {
            assert!(PRELUDE.contains(name), "{name}");
        }
    }
}
