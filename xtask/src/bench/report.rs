//! The report: every figure beside its pgbench reference and target, as a Markdown table,
//! and its place in BENCHMARKS.md (between markers, so the analysis around it survives).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};

use super::pgbench::Pgbench;
use super::wrk::{PHASES, WrkRun};
use super::{ms, plan::Plan};
use crate::load::{self, Lag, Rebuild, Seeded};
use crate::machine::Machine;
use crate::markers::Markers;

/// The markers around the part of BENCHMARKS.md each run rewrites.
const MARKERS: Markers = Markers {
    begin: "<!-- bench:begin: written by `cargo xtask bench`; edit outside the markers -->",
    end: "<!-- bench:end -->",
};

/// Everything a run measured.
pub(super) struct Results {
    pub(super) smoke: bool,
    pub(super) plan: String,
    pub(super) server_env: String,
    pub(super) ready: Duration,
    pub(super) restart_ready: Duration,
    pub(super) seeded: Vec<Seeded>,
    pub(super) wrk: BTreeMap<&'static str, WrkRun>,
    pub(super) lag: Option<Lag>,
    pub(super) rebuild: Option<Rebuild>,
    pub(super) rss_kib: u64,
    pub(super) pgbench: Option<Pgbench>,
    pub(super) machine: Option<Machine>,
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
    pub(super) fn new(plan: &Plan) -> Results {
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
    pub(super) fn report(&self) -> String {
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
pub(super) fn write_benchmarks(path: &Path, report: &str) -> Result<()> {
    MARKERS.write(path, report, |text, marked| match text {
        Some(_) => bail!(
            "{} has no bench markers; move it away or add `{}` and `{}`",
            path.display(),
            MARKERS.begin,
            MARKERS.end
        ),
        None => Ok(format!(
            "# Benchmarks\n\n`cargo xtask bench` measures emporium beside Postgres's own limit \
             (pgbench) on the same machine; the part between the markers is its latest run.\n\n\
             {marked}\n\n## What bounds each figure\n\n(Not written yet.)\n"
        )),
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::markers::scratch_file;

    #[test]
    fn keeps_the_analysis_around_the_markers() {
        let path = scratch_file("bench-report");
        write_benchmarks(&path, "first\n").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace("(Not written yet.)", "analysis")).unwrap();
        write_benchmarks(&path, "second\n").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("second") && text.contains("analysis") && !text.contains("first"));
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
