//! The soak's verdict: rules a reader can check against the samples.
//!
//! The samples are cut in thirds by count. The first third is warm-up (pools fill, caches
//! warm, the bounded tables reach their steady size: the run's TTLs are a small part of
//! it) and is not judged. The middle third is the reference, and the last third must not
//! have grown beyond it. Each figure of a third is the median over its samples, so that a
//! few slow samples (another process on a shared machine) do not decide; a leak moves the
//! median of a whole third.
//!
//! - **Errors**: none, over the whole soak. An error is a request without an answer, a
//!   `5xx`, or an answer the contract does not give that request (`mix.rs`, `Op::expected`;
//!   a replayed `Idempotency-Key` that names another order); a request the driver did not
//!   send because [`MAX_IN_FLIGHT`] were still waiting (the server stalled) and an event
//!   parked as a dead letter count too. Requests not sent in a crowded sample (other
//!   processes took more than [`CROWDED`], half the machine, in it or in the one before:
//!   the server had less than one of two cores left) are reported and not judged. Such a
//!   stall also raises `VmRSS` (the allocator keeps what the requests piling up took), so
//!   a run with one in its last third may fail on memory; the samples show it.
//! - **Memory**: the last third's `VmRSS` at most the middle third's plus 10 %, and at
//!   least [`RSS_FLOOR_MIB`] more is always allowed.
//! - **Bounded tables** (`orders.idempotency_keys`, `users.login_failures`,
//!   `users.refresh_tokens`) and the **projection backlog** (events): the last third's at
//!   most 1.25 times the middle third's plus [`PLATEAU_FLOOR`]. A table that is never
//!   purged grows in proportion to time, and its median in the last third is then 1.67
//!   times the middle third's, less what it held before the soak (in a one-minute run,
//!   with the rows of the capacity burst and of half the wrong passwords cleared by a
//!   good login, `users.login_failures` unpurged reached 1.4 times).
//! - **p99 per route**: of each sample, the p99 of the route's requests in it; the last
//!   third's median at most 1.5 times the middle third's plus [`P99_FLOOR`]. The floor is
//!   added, not only a minimum: a password hash's route answers in about 70 ms with a few
//!   requests a sample, its p99 is nearly the sample's slowest, and a CI run's soak failed
//!   at 1.504 times (105.6 ms against 105.2) with no drift in any other figure. A route
//!   with fewer than [`P99_MIN_REQUESTS`] requests in either third is not judged.
//! - **Other processes' CPU** (`cpu.rs`): p99 is judged only if the share of the machine's
//!   CPU that other processes took rose by at most [`BUSIER`] (ten points) from the middle
//!   third to the last. On a shared 2-core machine a build that starts mid-run doubles the
//!   p99 of every CPU-bound route (the password hashes first); that is the machine, not a
//!   drift, and the report says so instead of judging.

use std::time::Duration;

use super::sample::{BOUNDED, Sample};
use crate::load::{MAX_IN_FLIGHT, quantile};

const RSS_RISE: f64 = 0.10;
pub(super) const RSS_FLOOR_MIB: f64 = 8.0;
const PLATEAU: f64 = 1.25;
pub(super) const PLATEAU_FLOOR: f64 = 20.0;
const P99_FACTOR: f64 = 1.5;
pub(super) const P99_FLOOR: Duration = Duration::from_millis(25);
pub(super) const P99_MIN_REQUESTS: usize = 20;
pub(super) const BUSIER: f64 = 0.10;
pub(super) const CROWDED: f64 = 0.5;
/// Fewer samples than this are not cut into thirds.
pub(super) const MIN_SAMPLES: usize = 9;

/// One rule applied.
pub(super) struct Check {
    pub(super) what: String,
    pub(super) middle: String,
    pub(super) last: String,
    pub(super) limit: String,
    /// `None`: too few requests to judge.
    pub(super) passed: Option<bool>,
}

pub(super) struct Verdict {
    pub(super) checks: Vec<Check>,
}

impl Verdict {
    pub(super) fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.passed != Some(false))
    }
}

/// The middle and the last third of `samples`.
pub(super) fn thirds(samples: &[Sample]) -> (&[Sample], &[Sample]) {
    let n = samples.len();
    (&samples[n / 3..2 * n / 3], &samples[2 * n / 3..])
}

pub(super) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The median over `samples` of `figure`.
fn of(samples: &[Sample], figure: impl Fn(&Sample) -> f64) -> f64 {
    median(samples.iter().map(figure).collect())
}

/// Applies every rule to `samples` (at least [`MIN_SAMPLES`]).
pub(super) fn judge(samples: &[Sample]) -> Verdict {
    let (middle, last) = thirds(samples);
    let mut checks = Vec::new();
    let errors: u64 = samples.iter().map(|s| s.window.errors).sum();
    let requests: u64 = samples.iter().map(|s| s.window.requests).sum();
    let dead = samples.last().map_or(0.0, |s| s.dead_letters);
    // A sample is crowded if other processes took more than CROWDED of the machine in it or
    // in the one before (a stall outlasts its cause while the backlog drains).
    let crowded = |i: usize| {
        samples[i.saturating_sub(1)..=i]
            .iter()
            .any(|s| s.others_cpu > CROWDED)
    };
    let (mut skipped, mut excused) = (0, 0);
    for (i, sample) in samples.iter().enumerate() {
        *if crowded(i) {
            &mut excused
        } else {
            &mut skipped
        } += sample.skipped;
    }
    checks.push(Check {
        what: "errors, requests not sent, dead letters (whole soak)".to_owned(),
        middle: String::new(),
        last: format!("{errors} of {requests}, {skipped} not sent, {dead:.0}"),
        limit: format!("0, 0, 0 (not sent: {MAX_IN_FLIGHT} were waiting)"),
        passed: Some(errors == 0 && skipped == 0 && dead == 0.0),
    });
    if excused > 0 {
        checks.push(Check {
            what: format!(
                "requests not sent while other processes took more than {:.0} % of the CPU",
                CROWDED * 100.0
            ),
            middle: String::new(),
            last: excused.to_string(),
            limit: "(the machine's stall, not the server's)".to_owned(),
            passed: None,
        });
    }
    let (m, l) = (of(middle, Sample::rss_mib), of(last, Sample::rss_mib));
    let limit = m + (m * RSS_RISE).max(RSS_FLOOR_MIB);
    checks.push(Check {
        what: "server memory (VmRSS)".to_owned(),
        middle: format!("{m:.1} MiB"),
        last: format!("{l:.1} MiB"),
        limit: format!("<= {limit:.1} MiB"),
        passed: Some(l <= limit),
    });
    let plateaus = BOUNDED
        .iter()
        .enumerate()
        .map(|(i, table)| {
            let rows = move |s: &Sample| s.bounded[i] as f64;
            (format!("rows of {table}"), of(middle, rows), of(last, rows))
        })
        .chain(std::iter::once((
            "projection backlog (events)".to_owned(),
            of(middle, |s| s.lag_events),
            of(last, |s| s.lag_events),
        )));
    for (what, m, l) in plateaus {
        let limit = m * PLATEAU + PLATEAU_FLOOR;
        checks.push(Check {
            what,
            middle: format!("{m:.0}"),
            last: format!("{l:.0}"),
            limit: format!("<= {limit:.0}"),
            passed: Some(l <= limit),
        });
    }
    let (m, l) = (of(middle, |s| s.others_cpu), of(last, |s| s.others_cpu));
    let quiet = l <= m + BUSIER;
    checks.push(Check {
        what: "CPU other processes took (p99 is judged only if it did not rise)".to_owned(),
        middle: format!("{:.0} %", m * 100.0),
        last: format!("{:.0} %", l * 100.0),
        limit: format!("<= {:.0} %", (m + BUSIER) * 100.0),
        passed: quiet.then_some(true),
    });
    let mut routes: Vec<&'static str> = samples
        .iter()
        .flat_map(|s| s.window.latencies.keys().copied())
        .collect();
    routes.sort_unstable();
    routes.dedup();
    for route in routes {
        let (m, m_count) = p99s(middle, route);
        let (l, l_count) = p99s(last, route);
        let limit = m * P99_FACTOR + P99_FLOOR.as_secs_f64() * 1000.0;
        let enough = m_count.min(l_count) >= P99_MIN_REQUESTS;
        checks.push(Check {
            what: format!("p99 of {route}"),
            middle: format!("{m:.1} ms ({m_count})"),
            last: format!("{l:.1} ms ({l_count})"),
            limit: format!("<= {limit:.1} ms"),
            passed: (enough && quiet).then_some(l <= limit),
        });
    }
    Verdict { checks }
}

/// The median over `samples` of each one's p99 of `route` (ms), and how many requests of
/// it there were.
fn p99s(samples: &[Sample], route: &str) -> (f64, usize) {
    let windows: Vec<&Vec<Duration>> = samples
        .iter()
        .filter_map(|s| s.window.latencies.get(route))
        .filter(|latencies| !latencies.is_empty())
        .collect();
    let p99s = windows
        .iter()
        .map(|latencies| quantile(latencies, 0.99).as_secs_f64() * 1000.0)
        .collect();
    (median(p99s), windows.iter().map(|l| l.len()).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a synthetic sample holds: server memory (MiB), rows of each bounded table, and
    /// the latency (ms) of each of its 30 requests of one route.
    struct Shape {
        rss: f64,
        rows: i64,
        latency: u64,
        errors: u64,
        /// The CPU other processes took.
        others: f64,
    }

    fn samples(n: usize, shape: impl Fn(usize) -> Shape) -> Vec<Sample> {
        (0..n)
            .map(|i| {
                let shape = shape(i);
                let mut sample = Sample::quiet(Duration::from_secs(2 * i as u64));
                let latency = Duration::from_millis(shape.latency);
                sample.window.latencies.insert("GET /x", vec![latency; 30]);
                sample.window.requests = 30;
                sample.window.errors = shape.errors;
                sample.rss_kib = (shape.rss * 1024.0) as u64;
                sample.bounded = vec![shape.rows; BOUNDED.len()];
                sample.others_cpu = shape.others;
                sample
            })
            .collect()
    }

    /// A steady server: memory that wobbles, tables that fill and are purged (a sawtooth),
    /// latency that varies; one sample of the last third is much worse (another process
    /// ran), which a median ignores.
    fn steady(i: usize) -> Shape {
        let hiccup = i == 25;
        Shape {
            rss: 60.0 + (i % 3) as f64 + if hiccup { 50.0 } else { 0.0 },
            rows: 200 + (i % 4) as i64 * 60,
            latency: if hiccup { 400 } else { 5 + (i % 5) as u64 },
            errors: 0,
            others: 0.05 + if hiccup { 0.5 } else { 0.0 },
        }
    }

    #[test]
    fn a_steady_run_passes_and_each_kind_of_growth_fails_it() {
        /// A run's name, the shape of its samples, and the checks it must fail.
        type Case = (&'static str, fn(usize) -> Shape, &'static [&'static str]);
        let cases: [Case; 5] = [
            ("steady", steady, &[]),
            (
                "memory leaking 1 MiB a sample",
                |i| Shape {
                    rss: 60.0 + i as f64,
                    ..steady(i)
                },
                &["server memory (VmRSS)"],
            ),
            (
                "tables never purged",
                |i| Shape {
                    rows: 100 * i as i64,
                    ..steady(i)
                },
                &[
                    "rows of orders.idempotency_keys",
                    "rows of users.login_failures",
                    "rows of users.refresh_tokens",
                ],
            ),
            (
                "p99 drifting from 6 ms to 40 ms",
                |i| Shape {
                    latency: if i < 20 { 6 } else { 40 },
                    ..steady(i)
                },
                &["p99 of GET /x"],
            ),
            (
                "one error",
                |i| Shape {
                    errors: u64::from(i == 3),
                    ..steady(i)
                },
                &["errors, requests not sent, dead letters (whole soak)"],
            ),
        ];
        for (name, shape, failing) in cases {
            let verdict = judge(&samples(30, shape));
            let failed: Vec<&str> = verdict
                .checks
                .iter()
                .filter(|check| check.passed == Some(false))
                .map(|check| check.what.as_str())
                .collect();
            assert_eq!(failed, failing, "{name}");
            assert_eq!(verdict.passed(), failing.is_empty(), "{name}");
        }
    }

    #[test]
    fn small_rises_within_the_floors_pass() {
        // 6 MiB more memory (under the 8 MiB floor), 15 more rows (under 20), p99 from 2 ms
        // to 20 ms (under 25 ms more): noise at these sizes.
        let verdict = judge(&samples(30, |i| Shape {
            rss: if i < 20 { 40.0 } else { 46.0 },
            rows: if i < 20 { 10 } else { 25 },
            latency: if i < 20 { 2 } else { 20 },
            errors: 0,
            others: 0.0,
        }));
        assert!(verdict.passed());
    }

    /// A password hash's route from 70 to 106 ms (a CI run's soak, 1.504 times) passes:
    /// 1.5 times plus the floor is 130 ms; twice the middle third's does not.
    #[test]
    fn a_slow_route_s_noise_passes_and_its_doubling_does_not() {
        let slow = |last: u64| {
            move |i: usize| Shape {
                latency: if i < 20 { 70 } else { last },
                ..steady(i)
            }
        };
        assert!(judge(&samples(30, slow(106))).passed());
        assert!(!judge(&samples(30, slow(140))).passed());
    }

    /// The same drift of p99 while another process takes half the machine is not judged:
    /// the report says the machine got busier instead.
    #[test]
    fn p99_is_not_judged_when_the_machine_got_busier() {
        let busier = |i: usize| Shape {
            latency: if i < 20 { 6 } else { 40 },
            others: if i < 20 { 0.05 } else { 0.55 },
            ..steady(i)
        };
        let verdict = judge(&samples(30, busier));
        assert!(verdict.passed());
        let judged = |what: &str| {
            verdict
                .checks
                .iter()
                .find(|c| c.what.starts_with(what))
                .map(|c| c.passed)
        };
        assert_eq!(judged("p99 of GET /x"), Some(None));
        assert_eq!(judged("CPU other processes took"), Some(None));
    }

    #[test]
    fn a_stall_fails_it_unless_the_machine_was_crowded_and_a_quiet_route_is_not_judged() {
        let mut run = samples(30, steady);
        for sample in &mut run {
            sample.window.latencies.insert("GET /rare", Vec::new());
        }
        run[12]
            .window
            .latencies
            .insert("GET /rare", vec![Duration::from_secs(1)]);
        run[5].skipped = 1;
        let verdict = judge(&run);
        assert!(!verdict.passed());
        let rare = verdict.checks.iter().find(|c| c.what == "p99 of GET /rare");
        assert_eq!(rare.map(|c| c.passed), Some(None));
        // The same stall in the sample after one where another process took most of the
        // machine is the machine's: reported, not judged.
        run[4].others_cpu = 0.8;
        let verdict = judge(&run);
        assert!(verdict.passed());
        assert!(
            verdict
                .checks
                .iter()
                .any(|c| c.what.starts_with("requests not sent while")
                    && c.last == "1"
                    && c.passed.is_none())
        );
    }
}
