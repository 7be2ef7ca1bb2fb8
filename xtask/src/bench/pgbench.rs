//! The reference: pgbench at the same client count, `-S` (select-only) and the default
//! tpcb-like script, in a database of its own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use super::plan::Plan;
use crate::db::{self, DbUrl};
use crate::describe;
use crate::machine::cores;

/// pgbench's figures, transactions per second.
pub(super) struct Pgbench {
    pub(super) select_only: f64,
    pub(super) tpcb: f64,
    pub(super) commands: Vec<String>,
}

/// The system's pgbench.
pub(super) fn find() -> Result<PathBuf> {
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

/// `pgbench -i`, then `-S` and tpcb-like, each for the plan's duration and concurrency,
/// in the database of `url`.
pub(super) fn run(pgbench: &Path, plan: &Plan, url: &DbUrl, out: &Path) -> Result<Pgbench> {
    let db::Libpq {
        host,
        port,
        user,
        password,
        database,
    } = url.libpq()?;
    let database = database.with_context(|| format!("{url} names no database"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tps() {
        let pgbench = "number of failed transactions: 0 (0.000%)\nlatency average = 1.2 ms\n\
                       initial connection time = 5.1 ms\ntps = 8123.456789 (without initial connection time)\n";
        assert_eq!(parse_tps(pgbench).unwrap(), 8123.456789);
        assert!(parse_tps("tps = 1 (including connections establishing)").is_err());
    }
}
