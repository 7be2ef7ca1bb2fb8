//! The report: every figure beside the floor's and pgbench's, with its target (against the
//! floor), as a Markdown table, each round's rate under it, and its place in BENCHMARKS.md
//! (between markers, so the analysis around it survives).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};

use super::pgbench::Pgbench;
use super::rounds::{Measured, Rounds, schedule};
use super::wrk::{PHASES, Phase, WrkRun};
use super::{ms, plan::Plan};
use crate::load::{self, Lag, Rebuild};
use crate::machine::Machine;
use crate::markers::Markers;
use crate::seed::Seeded;

/// The markers around the part of BENCHMARKS.md a run of the default size (100k orders)
/// rewrites.
const MARKERS: Markers = Markers {
    begin: "<!-- bench:begin: written by `cargo xtask bench`; edit outside the markers -->",
    end: "<!-- bench:end -->",
};

/// The markers around the part a run with `--orders 1000000` rewrites.
const MARKERS_1M: Markers = Markers {
    begin: "<!-- bench-1m:begin: written by `cargo xtask bench --orders 1000000`; edit outside the markers -->",
    end: "<!-- bench-1m:end -->",
};

/// The markers of a run over `orders` orders, if it has a part of BENCHMARKS.md.
pub(super) fn markers_for(orders: usize) -> Option<&'static Markers> {
    match orders {
        100_000 => Some(&MARKERS),
        1_000_000 => Some(&MARKERS_1M),
        _ => None,
    }
}

/// Everything a run measured.
pub(super) struct Results {
    pub(super) smoke: bool,
    pub(super) plan: String,
    pub(super) server_env: String,
    pub(super) floor_env: String,
    /// The order of a phase's rounds, as words.
    pub(super) order: String,
    pub(super) ready: Duration,
    pub(super) restart_ready: Duration,
    pub(super) seeded: Vec<Seeded>,
    pub(super) wrk: BTreeMap<&'static str, Measured>,
    pub(super) lag: Option<Lag>,
    pub(super) rebuild: Option<Rebuild>,
    pub(super) rss_kib: u64,
    /// The server's peak RSS (KiB) after each stage, so the peak's stage is known.
    pub(super) peaks: Vec<(&'static str, u64)>,
    pub(super) pgbench: Option<Pgbench>,
    pub(super) machine: Option<Machine>,
    /// The share of CPU time the hypervisor stole during the wrk phases.
    pub(super) steal: Option<f64>,
}

/// `K=V K=V`, without the admin token.
fn settings(env: &[(&'static str, String)]) -> String {
    env.iter()
        .filter(|(k, _)| *k != "ADMIN_TOKEN")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A row of the table.
#[derive(Default)]
struct Row {
    figure: String,
    value: String,
    /// The floor's figure, emporium / floor, the target against it, met or missed.
    floor: String,
    floor_ratio: String,
    target: String,
    verdict: &'static str,
    /// pgbench's figure, emporium / pgbench, floor / pgbench.
    reference: String,
    ratio: String,
    floor_reference_ratio: String,
}

impl Row {
    fn info(figure: impl Into<String>, value: impl Into<String>) -> Row {
        Row {
            figure: figure.into(),
            value: value.into(),
            ..Row::default()
        }
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

/// A side's medians, and its failures if any.
fn figures(rounds: &Rounds, flows: bool) -> String {
    let mut text = if flows {
        format!(
            "{:.0} flows/s ({:.0} rps)",
            rounds.flows_per_second(),
            rounds.per_second()
        )
    } else {
        format!("{:.0} rps", rounds.per_second())
    };
    let _ = write!(
        text,
        ", p50 {:.1} ms, p99 {:.1} ms",
        ms(rounds.p50()),
        ms(rounds.p99())
    );
    if rounds.errors() > 0 {
        let _ = write!(
            text,
            ", **{} errors** of {}",
            rounds.errors(),
            rounds.requests()
        );
    }
    text
}

/// The row of a wrk phase: emporium beside the floor (for the flow, beside the floor's
/// placement rate) and beside pgbench (`-S` for reads, tpcb-like for writes).
fn wrk_row(
    phase: &Phase,
    measured: &Measured,
    placement: Option<&Rounds>,
    pgbench: Option<&Pgbench>,
) -> Row {
    let flows = phase.name == "create_confirm";
    let emporium = &measured.emporium;
    let rate = if flows {
        emporium.flows_per_second()
    } else {
        emporium.per_second()
    };
    // What the ratio is taken against: the floor's own rounds, or its placements.
    let floor = measured.floor.as_ref().or(placement);
    let floor_rate = floor.map(Rounds::per_second);
    let mut row = Row {
        figure: phase.figure.to_owned(),
        value: figures(emporium, flows),
        ..Row::default()
    };
    if let (Some(floor), Some(floor_rate)) = (floor, floor_rate) {
        let ratio = rate / floor_rate;
        let p99 = phase.target.p99_ms.map(Duration::from_millis);
        row.floor = match &measured.floor {
            Some(_) => figures(floor, false),
            None => format!("placement {floor_rate:.0} rps"),
        };
        row.floor_ratio = format!("{ratio:.2}");
        row.target = format!(">= {:.1}", phase.target.ratio);
        if let Some(p99) = p99 {
            let _ = write!(row.target, ", p99 <= {:.0} ms", ms(p99));
        }
        row.verdict = verdict(
            emporium.errors() == 0
                && ratio >= phase.target.ratio
                && p99.is_none_or(|p99| emporium.p99() <= p99),
        );
    }
    if let Some(pgbench) = pgbench {
        let (name, tps) = if phase.name.starts_with("create") {
            ("tpcb-like", pgbench.tpcb)
        } else {
            ("-S", pgbench.select_only)
        };
        row.reference = format!("{name} {tps:.0} tps");
        row.ratio = format!("{:.2}", rate / tps);
        if let Some(floor_rate) = floor_rate.filter(|_| measured.floor.is_some()) {
            row.floor_reference_ratio = format!("{:.2}", floor_rate / tps);
        }
    }
    row
}

impl Results {
    /// `after the seed 60.1, ...`: the peak (MiB) once each stage was done.
    fn peaks_by_stage(&self) -> String {
        let stages: Vec<String> = self
            .peaks
            .iter()
            .map(|(stage, kib)| format!("after {stage} {:.1}", *kib as f64 / 1024.0))
            .collect();
        stages.join(", ")
    }

    pub(super) fn new(plan: &Plan) -> Results {
        Results {
            smoke: plan.smoke,
            plan: format!(
                "{} users, {} products, {} orders; {} connections; each wrk phase {} rounds of {} s per server, the other phases {} s; {} lag probes, pgbench scale {}",
                plan.users,
                plan.products,
                plan.orders,
                plan.concurrency,
                plan.rounds,
                plan.round.as_secs(),
                plan.duration.as_secs(),
                plan.probes,
                plan.pgbench_scale
            ),
            server_env: settings(&plan.server_env),
            floor_env: settings(&plan.floor_env()),
            order: schedule(plan.rounds, true)
                .iter()
                .filter(|(_, round)| *round > 0)
                .map(|(side, _)| side.name())
                .collect::<Vec<_>>()
                .join(", "),
            ready: Duration::ZERO,
            restart_ready: Duration::ZERO,
            seeded: Vec::new(),
            wrk: BTreeMap::new(),
            lag: None,
            rebuild: None,
            rss_kib: 0,
            peaks: Vec::new(),
            pgbench: None,
            machine: None,
            steal: None,
        }
    }

    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let pgbench = self.pgbench.as_ref();
        let placement = self.wrk.get("create").and_then(|m| m.floor.as_ref());
        for phase in &PHASES {
            if let Some(measured) = self.wrk.get(phase.name) {
                rows.push(wrk_row(phase, measured, placement, pgbench));
            }
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
                target: "p99 <= 50 ms".to_owned(),
                verdict: verdict(
                    p99 <= Duration::from_millis(50) && lag.unseen == 0 && lag.errors == 0,
                ),
                ..Row::info("projection lag at 80 % of max placement rate", value)
            });
        }
        if let Some(rebuild) = &self.rebuild {
            let value = format!(
                "{:.0} events/s ({} events in {:.1} s)",
                rebuild.per_second(),
                rebuild.events,
                rebuild.elapsed.as_secs_f64()
            );
            rows.push(Row {
                target: ">= 50000 events/s".to_owned(),
                verdict: verdict(rebuild.per_second() >= 50_000.0),
                ..Row::info("read-model rebuild", value)
            });
        }
        let rss_mb = self.rss_kib as f64 / 1024.0;
        rows.push(Row {
            target: "<= 100 MB".to_owned(),
            verdict: verdict(self.rss_kib as f64 * 1024.0 <= 100e6),
            ..Row::info(
                "server peak RSS (VmHWM)",
                format!("{rss_mb:.1} MiB ({})", self.peaks_by_stage()),
            )
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
                target: "<= 1 s".to_owned(),
                verdict: verdict(ready <= Duration::from_secs(1)),
                ..Row::info(figure, format!("{:.0} ms", ms(ready)))
            });
        }
        for seeded in &self.seeded {
            let how = match seeded.requests {
                0 => "in bulk, by SQL".to_owned(),
                n => format!("{:.0} requests/s", n as f64 / seeded.elapsed.as_secs_f64()),
            };
            rows.push(Row::info(
                format!("seeding {}", seeded.what),
                format!(
                    "{:.0} {}/s ({} in {:.1} s, {how})",
                    seeded.per_second(),
                    seeded.what,
                    seeded.count,
                    seeded.elapsed.as_secs_f64(),
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
            let steal = self.steal.map_or(String::new(), |steal| {
                format!(
                    "; {:.0} % of the CPU time stolen by the hypervisor during the wrk phases",
                    steal * 100.0
                )
            });
            let _ = writeln!(
                out,
                "| machine | {} cores ({}), {:.1} GiB memory{steal} |",
                m.cores, m.cpu, m.memory_gib
            );
            let _ = writeln!(out, "| Postgres | {} |", m.postgres);
            let _ = writeln!(
                out,
                "| server | release build, {}, `RUST_LOG` default (info) |",
                self.server_env
            );
            let _ = writeln!(
                out,
                "| floor | `bench-floor` release build, {}; no authentication, no request log (see below) |",
                self.floor_env
            );
            let _ = writeln!(out, "| run | {} |", self.plan);
            let _ = writeln!(out);
        }
        let _ = writeln!(
            out,
            "| figure | emporium | floor | emporium / floor | target | | pgbench | emporium / pgbench | floor / pgbench |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
        for row in self.rows() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.figure,
                row.value,
                row.floor,
                row.floor_ratio,
                row.target,
                row.verdict,
                row.reference,
                row.ratio,
                row.floor_reference_ratio
            );
        }
        self.rounds_table(out);
        let _ = writeln!(out, "\nCommands (paths under `target/bench/`):\n\n```sh");
        let _ = writeln!(
            out,
            "cargo xtask bench{}",
            if self.smoke { " --smoke" } else { "" }
        );
        let _ = writeln!(
            out,
            "# each wrk line below ran once to warm up, then once per round: emporium and the floor by turns"
        );
        for phase in &PHASES {
            if let Some(measured) = self.wrk.get(phase.name) {
                let sides = std::iter::once(&measured.emporium).chain(&measured.floor);
                for rounds in sides {
                    if let Some(run) = rounds.runs.first() {
                        let _ = writeln!(out, "{}", run.command);
                    }
                }
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

impl Results {
    /// Every round's rate, so a reader sees the spread behind each median.
    fn rounds_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\nEach round's rate (rps; the flow in flows/s), in the order run (after a warm-up round of each, not counted): {}\n",
            self.order
        );
        let _ = writeln!(out, "| phase | emporium | floor |\n|---|---|---|");
        for phase in &PHASES {
            let Some(measured) = self.wrk.get(phase.name) else {
                continue;
            };
            let rates = |rounds: &Rounds| {
                let rate = |run: &WrkRun| match phase.name {
                    "create_confirm" => run.flows_per_second(),
                    _ => run.per_second(),
                };
                let rates: Vec<String> = rounds
                    .runs
                    .iter()
                    .map(|r| format!("{:.0}", rate(r)))
                    .collect();
                rates.join(", ")
            };
            let floor = measured.floor.as_ref().map(rates).unwrap_or_default();
            let _ = writeln!(
                out,
                "| {} | {} | {floor} |",
                phase.name,
                rates(&measured.emporium)
            );
        }
    }
}

/// Puts `report` between the markers of BENCHMARKS.md, keeping what is around them (the
/// analysis); creates the file if there is none.
pub(super) fn write_benchmarks(path: &Path, markers: &Markers, report: &str) -> Result<()> {
    markers.write(path, report, |text, marked| match text {
        Some(_) => bail!(
            "{} has no bench markers; move it away or add `{}` and `{}`",
            path.display(),
            markers.begin,
            markers.end
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
        write_benchmarks(&path, &MARKERS, "first\n").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace("(Not written yet.)", "analysis")).unwrap();
        write_benchmarks(&path, &MARKERS, "second\n").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("second") && text.contains("analysis") && !text.contains("first"));
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
