//! One round: start its instances, spread the load over them, crash what the plan says
//! (and NATS too, if it says so), let the instances left serve alone a moment, start the
//! killed ones again under the load, then settle and check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use natsserver::NatsServer;

use super::check::{scalar, settle_and_check};
use super::load::{Counts, Instances, drive};
use super::plan::{Crash, Moment, Nats, Plan};
use super::{Chaos, GATEWAY_TIMEOUT, IN_FLIGHT_WAIT, SLOW_CALL, Shop};
use crate::db;
use crate::load::Rng;
use crate::server::Server;

/// Load drivers per round, whatever the number of instances.
const DRIVERS: usize = 6;
/// How long the load goes on once every instance serves again, so that the restarted
/// ones take their share before the round settles.
const AFTER_RESTART: Duration = Duration::from_millis(300);

impl Chaos {
    pub(super) async fn round(
        &mut self,
        (round, rounds): (u32, u32),
        plan: Plan,
        shop: &Arc<Shop>,
    ) -> Result<Vec<String>> {
        if plan.publishes() && self.launcher.nats_url.is_none() {
            let url = self.nats.lock().expect("NATS is not poisoned").url();
            self.launcher.nats_url = Some(url);
        }
        let nats_url = self.launcher.nats_url.clone();
        let names: Vec<String> = (0..plan.instances)
            .map(|i| format!("round{round}-server{i}"))
            .collect();
        let (servers, bases): (Vec<Server>, Vec<String>) =
            self.launcher.start_all(&names)?.into_iter().unzip();
        let mut servers: Vec<Option<Server>> = servers.into_iter().map(Some).collect();
        let instances = Arc::new(Instances::new(bases));
        let probe = db::connect(&self.url).await?;
        let in_flight_now = invariants::gateway_calls_in_flight(SLOW_CALL, GATEWAY_TIMEOUT);
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let drivers: Vec<_> = (0..DRIVERS)
            .map(|_| {
                let rng = Rng::new(self.rng.next());
                let (instances, shop, stop) = (instances.clone(), shop.clone(), stop.clone());
                tokio::spawn(drive(instances, shop, rng, stop, counts.clone()))
            })
            .collect();
        let began = Instant::now();
        let nats_kill = (plan.nats == Nats::Killed).then(|| {
            let at = Duration::from_millis(300 + self.rng.next() % 1700);
            let down = Duration::from_millis(500 + self.rng.next() % 2500);
            (
                tokio::spawn(kill_nats(self.nats.clone(), at, down)),
                at,
                down,
            )
        });
        let (what, in_flight, crashed_after, killed) = match plan.crash {
            Crash::Servers { kill, when } => {
                let in_flight = self.until(when, &probe, &in_flight_now).await;
                let after = began.elapsed();
                let killed = self.pick(plan.instances, kill);
                for &instance in &killed {
                    instances.down(instance);
                    if let Some(server) = servers[instance].take() {
                        server.kill();
                    }
                }
                let moment = match when {
                    Moment::Random => "at a random moment",
                    Moment::GatewayCalls => "the moment gateway calls were in flight",
                };
                let numbers: Vec<String> = killed.iter().map(usize::to_string).collect();
                let what = format!(
                    "killed instance(s) {} of 0-{} with -9 {moment}",
                    numbers.join(", "),
                    plan.instances - 1
                );
                (what, in_flight, after, killed)
            }
            Crash::Postgres => {
                let load = Duration::from_millis(500 + self.rng.next() % 2500);
                tokio::time::sleep(load).await;
                let in_flight = count_or_none(&probe, &in_flight_now).await;
                let after = began.elapsed();
                self.postgres.crash()?;
                tokio::time::sleep(Duration::from_millis(300 + self.rng.next() % 700)).await;
                self.postgres.start()?;
                let what = "crashed and restarted Postgres under every instance".to_owned();
                (what, in_flight, after, Vec::new())
            }
        };
        // What the crash left for the reconciler and the saga (with the instances left
        // still serving, their own confirms in flight among them).
        let unsettled = scalar(
            &db::connect(&self.url).await?,
            &invariants::unsettled_payments(),
        )
        .await?;
        let survivors = plan.survivors().unwrap_or(plan.instances);
        if plan.survivors().is_some_and(|n| n > 0) {
            // The instances left serve alone: they take over the killed ones' subscribers,
            // pending payments and expiring orders.
            tokio::time::sleep(Duration::from_millis(300 + self.rng.next() % 700)).await;
        }
        let restarting = Instant::now();
        if !killed.is_empty() {
            let names: Vec<String> = killed
                .iter()
                .map(|i| format!("round{round}-server{i}-restarted"))
                .collect();
            let launcher = self.launcher.clone();
            let restarted =
                tokio::task::spawn_blocking(move || launcher.start_all(&names)).await??;
            for (&instance, (server, base)) in killed.iter().zip(restarted) {
                servers[instance] = Some(server);
                instances.up(instance, base);
            }
        }
        let restart_took = restarting.elapsed();
        let nats = match nats_kill {
            Some((task, at, down)) => {
                task.await?.context("killing and restarting NATS")?;
                self.totals.nats_kills += 1;
                format!(", NATS killed with -9 after {at:.1?} and started again {down:.1?} later")
            }
            None if nats_url.is_some() => ", NATS on".to_owned(),
            None => ", no NATS".to_owned(),
        };
        tokio::time::sleep(AFTER_RESTART).await;
        stop.store(true, Ordering::SeqCst);
        for driver in drivers {
            let _ = driver.await;
        }
        let (sent, failed, slow) = (
            counts.sent.load(Ordering::SeqCst),
            counts.failed.load(Ordering::SeqCst),
            counts.slow.load(Ordering::SeqCst),
        );
        let each: Vec<String> = instances.sent().iter().map(u64::to_string).collect();
        let restarted = match survivors {
            _ if killed.is_empty() => String::new(),
            0 => format!(" (restarted, ready in {restart_took:.1?})"),
            n => format!(" ({n} served on alone; restarted, ready in {restart_took:.1?})"),
        };
        println!(
            "round {round}: {} instance(s){nats}; {what} after {crashed_after:.1?}{restarted}, \
             {in_flight} gateway call(s) in flight; {sent} requests ({} by instance; {slow} \
             confirms with a slow token), {failed} failed (connection lost, 503, or a 5xx \
             bug); {unsettled} payment(s) left pending or mid-refund",
            plan.instances,
            each.join("/"),
        );
        let totals = &mut self.totals;
        totals.sent += sent;
        totals.failed += failed;
        totals.slow += slow;
        totals.in_flight += in_flight;
        totals.unsettled += unsettled;
        let bases = instances.serving();
        let settled = settle_and_check(&self.url, &bases, shop, nats_url.as_deref()).await?;
        let (found, took) = (settled.found, settled.took);
        drop(servers);
        let verdict = if found.is_empty() {
            let stream = settled.streamed.map_or(String::new(), |(n, read)| {
                format!(
                    ", and against the stream ({n} messages, each event once in log order; \
                     read and judged in {read:.1?})"
                )
            });
            format!(
                "invariants hold, through each of {} instance(s){stream}",
                bases.len()
            )
        } else {
            format!("{} VIOLATIONS", found.len())
        };
        println!("round {round}/{rounds}: {verdict} (settled in {took:.1?})");
        Ok(found)
    }

    /// Waits for the moment `when`; the gateway calls in flight then.
    async fn until(
        &mut self,
        when: Moment,
        probe: &tokio_postgres::Client,
        in_flight: &str,
    ) -> i64 {
        match when {
            Moment::Random => {
                let load = Duration::from_millis(500 + self.rng.next() % 2500);
                tokio::time::sleep(load).await;
                count_or_none(probe, in_flight).await
            }
            Moment::GatewayCalls => {
                let warm_up = Duration::from_millis(300 + self.rng.next() % 1200);
                tokio::time::sleep(warm_up).await;
                let deadline = Instant::now() + IN_FLIGHT_WAIT;
                loop {
                    let n = count_or_none(probe, in_flight).await;
                    if n > 0 || Instant::now() > deadline {
                        break n;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
    }

    /// `kill` of instances `0..instances`, at random, in ascending order.
    fn pick(&mut self, instances: usize, kill: usize) -> Vec<usize> {
        let mut left: Vec<usize> = (0..instances).collect();
        let mut picked: Vec<usize> = (0..kill)
            .map(|_| left.remove(self.rng.below(left.len())))
            .collect();
        picked.sort_unstable();
        picked
    }
}

/// `kill -9`s NATS after `at`, and starts it again on its store `down` later.
async fn kill_nats(nats: Arc<Mutex<NatsServer>>, at: Duration, down: Duration) -> Result<()> {
    // Off the runtime: both wait for the process.
    let with = |act: fn(&mut NatsServer) -> Result<()>| {
        let nats = nats.clone();
        tokio::task::spawn_blocking(move || act(&mut nats.lock().expect("NATS is not poisoned")))
    };
    tokio::time::sleep(at).await;
    with(NatsServer::kill).await??;
    tokio::time::sleep(down).await;
    with(NatsServer::restart).await?
}

/// [`scalar`], or 0 when the database does not answer (a count for the figures only).
async fn count_or_none(client: &tokio_postgres::Client, sql: &str) -> i64 {
    scalar(client, sql).await.unwrap_or(0)
}
