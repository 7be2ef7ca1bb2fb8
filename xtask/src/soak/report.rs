//! The soak's report: the run's facts, the verdict with every check, the plot, the samples
//! (every one in `samples.csv`, a few in the Markdown) and the growth of the tables that
//! grow by design. It goes to stdout and `target/soak/`; a run of ten minutes or more also
//! puts it into BENCHMARKS.md between its own markers (and its plot in `docs/soak.svg`).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::Run;
use super::mix::MIX;
use super::sample::{BOUNDED, GROWING, Sample};
use super::verdict::{self, Verdict};
use crate::markers::Markers;

const MARKERS: Markers = Markers {
    begin: "<!-- soak:begin: written by `cargo xtask soak`; edit outside the markers -->",
    end: "<!-- soak:end -->",
};

/// How many samples the Markdown lists at most.
const ROWS: usize = 20;

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The Markdown report; `plot` is the path the plot is linked at.
pub(super) fn markdown(run: &Run, verdict: &Verdict, plot: &str) -> String {
    let mut out = String::new();
    let o = &mut out;
    let m = &run.machine;
    let samples = &run.samples;
    let load = |s: Option<&Sample>| s.map_or(0.0, |s| s.load);
    let requests: u64 = samples.iter().map(|s| s.window.requests).sum();
    let _ = writeln!(o, "| run | |\n|---|---|");
    let _ = writeln!(o, "| date | {} |", m.date);
    let _ = writeln!(o, "| commit | {} |", m.commit);
    let _ = writeln!(
        o,
        "| machine | {} cores ({}), {:.1} GiB memory; load average (1 min) {:.1} after the first sample, {:.1} at the end |",
        m.cores,
        m.cpu,
        m.memory_gib,
        load(samples.first()),
        load(samples.last())
    );
    let _ = writeln!(o, "| Postgres | {} |", m.postgres);
    let _ = writeln!(o, "| server | release build, {} |", run.server_env);
    let log = &run.log;
    let _ = write!(
        o,
        "| server log | {} lines (`RUST_LOG` {}), {} warnings, {} errors",
        log.lines,
        std::env::var("RUST_LOG").unwrap_or_else(|_| "unset: info".to_owned()),
        log.warnings,
        log.errors
    );
    if let Some(first) = &log.first {
        let _ = write!(o, "; the first: `{}`", first.replace(['`', '|'], "'"));
    }
    let _ = writeln!(o, " |");
    let capacity = &run.capacity;
    let _ = writeln!(
        o,
        "| capacity | {:.0} requests/s: {} connections sending the mix back to back for {} s \
         (closed loop); p99 {:.1} ms, {} errors; other processes took {:.0} % of the CPU meanwhile |",
        capacity.per_second,
        capacity.connections,
        capacity.time.as_secs(),
        ms(capacity.p99),
        capacity.errors,
        capacity.others_cpu * 100.0
    );
    let driven = &run.driven;
    let _ = writeln!(
        o,
        "| load | {:.0} requests/s asked (half the capacity, open loop), {:.1}/s sent, for {} \
         min: {requests} requests, {} not sent, {} stale `min_version` reads |",
        run.rate,
        driven.sent as f64 / driven.elapsed.as_secs_f64(),
        run.minutes,
        driven.skipped,
        samples.iter().map(|s| s.window.stale).sum::<u64>()
    );
    let _ = writeln!(
        o,
        "| samples | {}, every {} s; the first third is warm-up, the last third is compared with the middle one |",
        samples.len(),
        run.every.as_secs()
    );
    let _ = writeln!(
        o,
        "\n**Verdict: {}**\n",
        if verdict.passed() { "passed" } else { "FAILED" }
    );
    let others = verdict::median(samples.iter().map(|s| s.others_cpu).collect());
    if others > capacity.others_cpu + verdict::BUSIER {
        let _ = writeln!(
            o,
            "**The machine got busier after the capacity was measured**: other processes took \
             {:.0} % of the CPU during the burst and {:.0} % (median) during the soak, so the load \
             was more than half of what was left to the server; a failure may be the machine's.\n",
            capacity.others_cpu * 100.0,
            others * 100.0
        );
    }
    let _ = writeln!(
        o,
        "| check | middle third | last third | limit | |\n|---|---|---|---|---|"
    );
    for check in &verdict.checks {
        let mark = match check.passed {
            Some(true) => "ok",
            Some(false) => "**failed**",
            None => "not judged",
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {mark} |",
            check.what, check.middle, check.last, check.limit
        );
    }
    if let Some(error) = samples.iter().find_map(|s| s.window.first_error.as_ref()) {
        let _ = writeln!(o, "\nFirst error: `{}`", error.replace('`', "'"));
    }
    let _ = writeln!(o, "\n![The soak's samples over time]({plot})\n");
    let step = samples.len().div_ceil(ROWS).max(1);
    let _ = writeln!(
        o,
        "Samples{} (every one in `target/soak/samples.csv`):\n",
        if step > 1 {
            format!(", one in {step}")
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        o,
        "| t (s) | requests/s | errors | p99 (ms) | RSS (MiB) | pool waits | {} | backlog (events) | lag (s) | other processes' CPU | load |",
        BOUNDED.join(" | ")
    );
    let _ = writeln!(o, "|{}", "---|".repeat(10 + BOUNDED.len()));
    let listed = samples
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || i + 1 == samples.len());
    for (_, s) in listed {
        let rows: Vec<String> = s.bounded.iter().map(i64::to_string).collect();
        let _ = writeln!(
            o,
            "| {:.0} | {:.1} | {} | {:.1} | {:.1} | {:.0} | {} | {:.0} | {:.2} | {:.0} % | {:.2} |",
            s.at.as_secs_f64(),
            s.per_second(),
            s.window.errors,
            ms(s.p99()),
            s.rss_mib(),
            s.pool_waiting,
            rows.join(" | "),
            s.lag_events,
            s.lag_seconds,
            s.others_cpu * 100.0,
            s.load
        );
    }
    if let (Some(first), Some(end)) = (samples.first(), samples.last()) {
        let minutes = (end.at - first.at).as_secs_f64() / 60.0;
        let _ = writeln!(
            o,
            "\nThe tables that must stay bounded on disk, indexes included (reported, not judged: \
             purged rows are dead tuples until autovacuum takes them, once a minute at the soonest):\n\n\
             | table | KiB at the first sample | at the last |\n|---|---|---|"
        );
        for (i, table) in BOUNDED.iter().enumerate() {
            let kib = |s: &Sample| s.bounded_bytes[i] / 1024;
            let _ = writeln!(o, "| {table} | {} | {} |", kib(first), kib(end));
        }
        let _ = writeln!(
            o,
            "\nTables that grow by design (reported, not judged), from the first sample to the last:\n\n\
             | table | rows | rows at the end | per minute |\n|---|---|---|---|"
        );
        for (i, table) in GROWING.iter().enumerate() {
            let (from, to) = (first.growing[i], end.growing[i]);
            let _ = writeln!(
                o,
                "| {table} | {from} | {to} | {:.0} |",
                (to - from) as f64 / minutes.max(1e-9)
            );
        }
        let mib = |s: &Sample| s.database_bytes as f64 / 1024.0 / 1024.0;
        let _ = writeln!(
            o,
            "| (the whole database, MiB) | {:.1} | {:.1} | {:.1} |",
            mib(first),
            mib(end),
            (mib(end) - mib(first)) / minutes.max(1e-9)
        );
    }
    let _ = writeln!(o, "\nCommand: `cargo xtask soak --minutes {}`", run.minutes);
    out
}

/// Every sample, one line each, ending with the p99 of each route (ms; empty when the
/// sample has no request of it).
pub(super) fn csv(samples: &[Sample]) -> String {
    let routes: Vec<&str> = MIX.iter().map(|(op, _)| op.route()).collect();
    let mut out = format!(
        "t_s,requests,errors,not_sent,stale,p99_ms,rss_kib,pool_waiting,lag_events,lag_seconds,dead_letters,{},{},{},database_bytes,others_cpu,load,{}\n",
        BOUNDED.join(","),
        GROWING.join(","),
        BOUNDED.map(|table| format!("{table} bytes")).join(","),
        routes
            .iter()
            .map(|route| format!("\"p99_ms {route}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    for s in samples {
        let rows: Vec<String> = s
            .bounded
            .iter()
            .chain(&s.growing)
            .chain(&s.bounded_bytes)
            .map(i64::to_string)
            .collect();
        let _ = write!(
            out,
            "{:.1},{},{},{},{},{:.2},{},{},{},{:.3},{},{},{},{:.3},{}",
            s.at.as_secs_f64(),
            s.window.requests,
            s.window.errors,
            s.skipped,
            s.window.stale,
            ms(s.p99()),
            s.rss_kib,
            s.pool_waiting,
            s.lag_events,
            s.lag_seconds,
            s.dead_letters,
            rows.join(","),
            s.database_bytes,
            s.others_cpu,
            s.load
        );
        for route in &routes {
            out.push(',');
            if let Some(latencies) = s.window.latencies.get(route).filter(|l| !l.is_empty()) {
                let _ = write!(out, "{:.2}", ms(crate::load::quantile(latencies, 0.99)));
            }
        }
        out.push('\n');
    }
    out
}

/// Puts `report` into BENCHMARKS.md between the soak's markers; a file without them gets
/// a "Soak" section at its end.
pub(super) fn write_benchmarks(path: &Path, report: &str) -> Result<()> {
    MARKERS.write(path, report, |text, marked| {
        let text = text.with_context(|| format!("no {}", path.display()))?;
        Ok(format!(
            "{}\n\n## Soak\n\n`cargo xtask soak` runs a steady mix of every kind of request at \
             half the measured capacity and watches for what grows; the part between the \
             markers is its latest run of ten minutes or more.\n\n{marked}\n",
            text.trim_end()
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::markers::scratch_file;

    #[test]
    fn a_soak_section_is_added_once_and_then_replaced() {
        let path = scratch_file("soak-report");
        fs::write(&path, "# Benchmarks\n\nthe bench's part\n").unwrap();
        write_benchmarks(&path, "first\n").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text + "\nanalysis\n").unwrap();
        write_benchmarks(&path, "second\n").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Benchmarks\n\nthe bench's part\n\n## Soak\n"));
        assert!(text.contains("second") && text.contains("analysis") && !text.contains("first"));
        assert_eq!(text.matches("## Soak").count(), 1);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// Every line of the CSV has the header's columns (a route's p99 left empty when the
    /// sample has no request of it).
    #[test]
    fn the_csv_lines_have_the_header_s_columns() {
        let mut busy = Sample::quiet(Duration::from_secs(4));
        let route = MIX[0].0.route();
        busy.window
            .latencies
            .insert(route, vec![Duration::from_millis(3)]);
        let text = csv(&[Sample::quiet(Duration::from_secs(2)), busy]);
        let lines: Vec<&str> = text.lines().collect();
        let columns = |line: &str| line.matches(',').count();
        assert_eq!(lines.len(), 3);
        assert!(
            lines.iter().all(|line| columns(line) == columns(lines[0])),
            "{text}"
        );
        assert!(lines[0].contains(&format!("\"p99_ms {route}\"")));
        assert!(lines[2].contains(",3.00,"), "{text}");
    }
}
