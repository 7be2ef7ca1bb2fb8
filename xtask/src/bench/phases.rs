//! The phases driven through the API: start (and time to ready), seed, catch up,
//! projection lag, read-model rebuild.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use super::report::Results;
use super::{ms, plan::Plan};
use crate::db::{self, DbUrl};
use crate::load::{self, Lag, Rebuild};
use crate::rig::Rig;
use crate::seed::{self, Catalog};
use crate::server::Server;

/// One run: its sizes, and the server, database and client it drives (`target/bench/`).
pub(super) struct Bench {
    pub(super) plan: Plan,
    pub(super) rig: Rig,
}

impl Bench {
    pub(super) fn block_on<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        self.rig.block_on(work)
    }

    /// Starts the server sized by the plan, logging to `log`; it and the time from process
    /// start to `/health/ready` = 200.
    pub(super) fn start(&self, log: &str) -> Result<(Server, Duration)> {
        self.rig.start(&self.plan.server_env, log)
    }

    /// Starts `binary serve` (the floor) on `address` against the run's database with
    /// `env`, logging to `log`; it and its time to ready (at most `timeout`).
    pub(super) fn launch(
        &self,
        at: (&Path, &str),
        env: &[(&'static str, String)],
        log: &str,
        timeout: Duration,
    ) -> Result<(Server, Duration)> {
        self.rig.launch(at, env, log, timeout)
    }

    /// Seeds the data set, lets the projection catch up, `VACUUM ANALYZE`s, and writes the
    /// ids for the wrk scripts.
    pub(super) fn seed(&self, results: &mut Results) -> Result<Arc<Catalog>> {
        let plan = &self.plan;
        eprintln!(
            "xtask: seeding {} users, {} products, {} orders",
            plan.users, plan.products, plan.orders
        );
        let token = self.block_on(self.rig.api.log_in_staff())?;
        // For wrk's scripts (`prelude.lua`): a token of this run's throwaway database.
        std::fs::write(self.rig.out.join("token.txt"), format!("{token}\n"))
            .context("writing the token for wrk")?;
        let sizes = (plan.users, plan.products, plan.orders);
        let api = &self.rig.api;
        let (catalog, seeded) = if plan.seed_via_api {
            self.block_on(seed::via_api(api, sizes, plan.concurrency))?
        } else {
            self.block_on(seed::via_sql(api, &self.rig.url, sizes))?
        };
        for step in &seeded {
            eprintln!("xtask: seeded {}: {:.0}/s", step.what, step.per_second());
        }
        results.seeded = seeded;
        self.caught_up()?;
        self.block_on(maintain(&self.rig.url, VACUUM_ANALYZE))?;
        write_ids(&self.rig.out, &catalog)?;
        Ok(Arc::new(catalog))
    }

    /// Waits until the projection has applied every event, so a phase starts quiet.
    pub(super) fn caught_up(&self) -> Result<()> {
        self.block_on(load::caught_up(&self.rig.api, Duration::from_secs(600)))
    }

    /// Projection lag while placing orders at 80 % of `max_rate`.
    pub(super) fn lag(&self, catalog: &Arc<Catalog>, max_rate: f64) -> Result<Lag> {
        let rate = 0.8 * max_rate;
        eprintln!(
            "xtask: projection lag: up to {} probes while placing {rate:.0} orders/s",
            self.plan.probes
        );
        let limit = self.plan.duration * 6;
        let lag = self.block_on(load::projection_lag(
            &self.rig.api,
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
    pub(super) fn rebuild(&self) -> Result<Rebuild> {
        eprintln!("xtask: rebuilding the read model");
        let rebuild = self.block_on(async {
            let client = db::connect(&self.rig.url).await?;
            let (events, started) = load::start_rebuild(&self.rig.api).await?;
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
                load::rebuild_done(&self.rig.api).await?,
                "the rebuild's generation is live but /admin/projections still shows it"
            );
            Ok(Rebuild { events, elapsed })
        })?;
        eprintln!(
            "xtask: rebuilt {} events at {:.0}/s",
            rebuild.events,
            rebuild.per_second()
        );
        self.block_on(retired(&self.rig.url))?;
        Ok(rebuild)
    }
}

/// What autovacuum would do after a bulk load, now: fresh statistics for the planner
/// and a visibility map for index-only scans.
const VACUUM_ANALYZE: &str = "VACUUM ANALYZE";

/// Writes every dirty page out now, so that the checkpoint the bulk seed's and the floor's
/// copies' WAL calls for does not run under the rounds instead, its writes beside their
/// commits' flushes (at 1M orders those are gigabytes).
pub(crate) const CHECKPOINT: &str = "CHECKPOINT";

/// Runs one of the maintenance statements above on a connection of its own.
pub(crate) async fn maintain(url: &DbUrl, statement: &str) -> Result<()> {
    eprintln!("xtask: {statement}");
    db::connect(url)
        .await?
        .batch_execute(statement)
        .await
        .with_context(|| statement.to_owned())
}

/// Waits until the rebuild's old generation is deleted (it is, right after the switch),
/// so that no delete runs under the next phase.
async fn retired(url: &DbUrl) -> Result<()> {
    let client = db::connect(url).await?;
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
