//! What the soak samples every few seconds: the requests of the window just ended (latency
//! per route, errors, stale reads), the server's resident memory (`VmRSS`), pool waits,
//! projection lag and dead letters from `/metrics`, the CPU other processes took
//! (`cpu.rs`) and the load average, and table sizes from Postgres: the tables that must
//! stay bounded, and those that grow by design.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use reqwest::Method;

use super::cpu::CpuMeter;
use crate::load::Api;
use crate::server::Server;

/// The tables that must stay bounded (purged on a schedule: `IDEMPOTENCY_TTL` by the
/// sweeper, the others every `PURGE_INTERVAL`), whose rows are judged.
pub(super) const BOUNDED: [&str; 3] = [
    "orders.idempotency_keys",
    "users.login_failures",
    "users.refresh_tokens",
];

/// Tables that grow with traffic by design (the business record and the event logs): their
/// rows are reported, not judged.
pub(super) const GROWING: [&str; 9] = [
    "users.users",
    "orders.orders",
    "payments.payments",
    "orders_read.orders",
    "gateway.ledger",
    "users.events",
    "products.events",
    "orders.events",
    "payments.events",
];

/// The requests of one window.
#[derive(Default)]
pub(super) struct Window {
    /// Latency of every answered request, by route (errors that were answered included).
    pub(super) latencies: BTreeMap<&'static str, Vec<Duration>>,
    pub(super) requests: u64,
    pub(super) errors: u64,
    /// `min_version` reads answered stale (`404` or `X-Read-Model-Stale`).
    pub(super) stale: u64,
    pub(super) first_error: Option<String>,
}

impl Window {
    /// Every latency of the window, whatever the route.
    pub(super) fn all(&self) -> Vec<Duration> {
        self.latencies.values().flatten().copied().collect()
    }
}

/// Where requests record themselves; the sampler takes a window at a time.
#[derive(Default)]
pub(super) struct Recorder(Mutex<Window>);

impl Recorder {
    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn answered(&self, route: &'static str, latency: Duration, stale: bool) {
        let mut window = self.window();
        window.requests += 1;
        window.stale += u64::from(stale);
        window.latencies.entry(route).or_default().push(latency);
    }

    /// A request that failed: no answer (`latency` `None`), or one the contract does not
    /// give it.
    pub(super) fn failed(&self, route: &'static str, latency: Option<Duration>, why: String) {
        let mut window = self.window();
        window.requests += 1;
        window.errors += 1;
        if let Some(latency) = latency {
            window.latencies.entry(route).or_default().push(latency);
        }
        window.first_error.get_or_insert(why);
    }

    /// The window so far; a new one starts.
    pub(super) fn take(&self) -> Window {
        std::mem::take(&mut *self.window())
    }
}

/// One sample: the window that ended at `at` and the state of things then.
pub(super) struct Sample {
    /// Since the soak started.
    pub(super) at: Duration,
    pub(super) window: Window,
    /// Requests the driver did not send in the window ([`crate::load::MAX_IN_FLIGHT`] were
    /// waiting); set by the sampler, which watches the driver.
    pub(super) skipped: u64,
    /// The window's length (the first may be shorter).
    pub(super) length: Duration,
    pub(super) rss_kib: u64,
    /// Requests waiting for a connection, summed over the module pools
    /// (`emporium_db_pool_waiting`).
    pub(super) pool_waiting: f64,
    /// The largest projection backlog (`emporium_projection_lag_events`), and the age of
    /// the oldest unapplied event (`emporium_projection_lag_seconds`).
    pub(super) lag_events: f64,
    pub(super) lag_seconds: f64,
    pub(super) dead_letters: f64,
    /// Rows of each of [`BOUNDED`], then of each of [`GROWING`].
    pub(super) bounded: Vec<i64>,
    /// Bytes on disk of each of [`BOUNDED`], indexes and TOAST included: reported, not
    /// judged (deleted rows leave dead tuples until autovacuum, which runs each minute at
    /// the soonest, takes them).
    pub(super) bounded_bytes: Vec<i64>,
    pub(super) growing: Vec<i64>,
    pub(super) database_bytes: i64,
    /// The share of the machine's CPU that other processes than the soak's took during
    /// the window (0 to 1), and the one-minute load average at its end.
    pub(super) others_cpu: f64,
    pub(super) load: f64,
}

impl Sample {
    pub(super) fn per_second(&self) -> f64 {
        self.window.requests as f64 / self.length.as_secs_f64()
    }

    pub(super) fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    /// The `q`-quantile of every request of the window.
    pub(super) fn quantile(&self, q: f64) -> Duration {
        crate::load::quantile(&self.window.all(), q)
    }

    pub(super) fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    /// A sample taken `at` of a window of 2 s without requests, on an idle server, for
    /// tests to fill in.
    #[cfg(test)]
    pub(super) fn quiet(at: Duration) -> Sample {
        Sample {
            at,
            window: Window::default(),
            skipped: 0,
            length: Duration::from_secs(2),
            rss_kib: 0,
            pool_waiting: 0.0,
            lag_events: 0.0,
            lag_seconds: 0.0,
            dead_letters: 0.0,
            bounded: vec![0; BOUNDED.len()],
            bounded_bytes: vec![0; BOUNDED.len()],
            growing: vec![0; GROWING.len()],
            database_bytes: 0,
            others_cpu: 0.0,
            load: 0.0,
        }
    }
}

/// Reads everything but the window: memory, CPU, `/metrics`, the tables.
pub(super) async fn measure(
    (api, server, client): (&Api, &Server, &tokio_postgres::Client),
    cpu: &mut CpuMeter,
    (at, window, length): (Duration, Window, Duration),
) -> Result<Sample> {
    let others_cpu = cpu.others(client).await?;
    let rss_kib = server.memory_kib("VmRSS")?;
    let metrics = metrics(api).await?;
    let series = |name: &str| gauges(&metrics, name);
    let counts: Vec<String> = BOUNDED
        .iter()
        .chain(GROWING.iter())
        .map(|table| format!("(SELECT count(*) FROM {table})"))
        .collect();
    let sizes: Vec<String> = BOUNDED
        .iter()
        .map(|table| format!("pg_total_relation_size('{table}')"))
        .collect();
    let sql = format!(
        "SELECT {}, {}, pg_database_size(current_database())",
        counts.join(", "),
        sizes.join(", ")
    );
    let row = client.query_one(&sql, &[]).await.context("counting rows")?;
    let rows: Vec<i64> = (0..counts.len() + sizes.len())
        .map(|i| row.get(i))
        .collect();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    Ok(Sample {
        at,
        window,
        skipped: 0,
        length,
        rss_kib,
        pool_waiting: series("emporium_db_pool_waiting").iter().sum(),
        lag_events: series("emporium_projection_lag_events")
            .into_iter()
            .fold(0.0, f64::max),
        lag_seconds: series("emporium_projection_lag_seconds")
            .into_iter()
            .fold(0.0, f64::max),
        dead_letters: series("emporium_dead_letters").iter().sum(),
        bounded: rows[..BOUNDED.len()].to_vec(),
        growing: rows[BOUNDED.len()..counts.len()].to_vec(),
        bounded_bytes: rows[counts.len()..].to_vec(),
        database_bytes: row.get(counts.len() + sizes.len()),
        others_cpu,
        load: load
            .split_whitespace()
            .next()
            .and_then(|l| l.parse().ok())
            .unwrap_or(0.0),
    })
}

/// `GET /metrics`. A server whose pools are all busy (a stall) answers `503` after its
/// bounded wait: it is asked again, for a while, so that the sample is late, not lost.
async fn metrics(api: &Api) -> Result<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = api
            .request(Method::GET, "/metrics")
            .send()
            .await
            .context("GET /metrics")?;
        let status = response.status();
        if status.is_success() {
            return response.text().await.context("reading /metrics");
        }
        ensure!(
            status == 503 && std::time::Instant::now() < deadline,
            "GET /metrics answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of every series of metric `name` in a Prometheus text exposition.
fn gauges(text: &str, name: &str) -> Vec<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name).then(|| value.parse().ok())?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_series_of_a_gauge() {
        let text = "# TYPE emporium_db_pool_waiting gauge\n\
                    emporium_db_pool_waiting{module=\"users\"} 2\n\
                    emporium_db_pool_waiting{module=\"orders\"} 1\n\
                    emporium_db_pool_waiting_total 7\n\
                    emporium_projection_lag_events{projection=\"orders_read\"} 12\n";
        assert_eq!(gauges(text, "emporium_db_pool_waiting"), [2.0, 1.0]);
        assert_eq!(gauges(text, "emporium_projection_lag_events"), [12.0]);
        assert!(gauges(text, "emporium_dead_letters").is_empty());
    }
}
