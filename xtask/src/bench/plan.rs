//! A run's sizes: data set, phase length, concurrency, and the server's sizing.

use std::time::Duration;

use super::{ADMIN_TOKEN, Options};
use crate::machine::cores;

/// The sizes of a run.
pub(super) struct Plan {
    pub(super) smoke: bool,
    pub(super) users: usize,
    pub(super) products: usize,
    pub(super) orders: usize,
    /// Seed through the API (`seed::via_api`) instead of in bulk (`seed::via_sql`).
    pub(super) seed_via_api: bool,
    /// How long each server is measured in each wrk phase, and each other load phase's
    /// length.
    pub(super) duration: Duration,
    /// A wrk phase measures emporium and the floor by turns, in rounds of this length.
    pub(super) round: Duration,
    /// Rounds per server and phase: `duration / round`.
    pub(super) rounds: usize,
    pub(super) concurrency: usize,
    pub(super) probes: usize,
    pub(super) pgbench_scale: u32,
    /// The server's sizing, as environment variables.
    pub(super) server_env: Vec<(&'static str, String)>,
}

impl Plan {
    pub(super) fn new(options: &Options) -> Plan {
        let cores = cores();
        let (orders, products, seconds, round, probes, scale) = if options.smoke {
            (300, 20, 2, 1, 30, 1)
        } else {
            (100_000, 1_000, 10, 2, 300, 10)
        };
        let orders = options.orders.unwrap_or(orders);
        let users = (orders / 10).max(50);
        let seconds = options.duration.unwrap_or(seconds).max(1);
        let round = round.min(seconds);
        Plan {
            smoke: options.smoke,
            users,
            products,
            orders,
            seed_via_api: options.seed_via_api,
            duration: Duration::from_secs(seconds),
            round: Duration::from_secs(round),
            rounds: (seconds / round) as usize,
            concurrency: options.concurrency.max(1),
            probes,
            pgbench_scale: scale,
            // One HTTP worker per core (actix's default, stated); the default pool of 8
            // connections per module (see BENCHMARKS.md); orders do not expire during the
            // run, so the data set stays what was seeded; the staff token outlasts the run.
            server_env: vec![
                ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
                ("HTTP_WORKERS", cores.to_string()),
                ("DB_POOL_SIZE", "8".to_owned()),
                ("ORDER_EXPIRY", "24h".to_owned()),
                ("ACCESS_TOKEN_TTL", "12h".to_owned()),
                // The placement phases place far more orders per seeded user than a
                // customer would hold.
                ("MAX_PENDING_ORDERS", "1000000".to_owned()),
            ],
        }
    }

    /// The floor's sizing: emporium's worker count and pool size.
    pub(super) fn floor_env(&self) -> Vec<(&'static str, String)> {
        self.server_env
            .iter()
            .filter(|(k, _)| ["HTTP_WORKERS", "DB_POOL_SIZE"].contains(k))
            .cloned()
            .collect()
    }
}
