//! Rebuilding the read model from the event log while queries keep answering.
//!
//! A rebuild creates a `building` generation, replays every order, user and product event
//! into it under its own subscriber name (`orders_read_rebuild`, own checkpoints), while the
//! live projection keeps the live generation current and queries keep reading it. To
//! switch, it takes the live projection's lock (no live batch runs), applies what is left,
//! makes its generation `live` and the old one `retired`, and hands its checkpoints and its
//! dead letters to the live projection, all in one transaction: an event the rebuild
//! parked is missing from the new generation, so it shows as the live projection's and is
//! retried through it (the live projection's own letters concerned the retired generation;
//! the rebuild replayed their events). The retired rows are deleted afterwards, in bounded
//! transactions (`cleanup.rs`). A rebuild whose process died is taken over by the next one
//! after a minute of silence: its generation is retired (and deleted the same way).
//!
//! No transaction of a rebuild grows with the log: the replay applies [`BATCH`] events per
//! transaction (reading the next batch while it applies one), and the switch, which holds
//! the live projection back, applies at most [`SWITCH_BUDGET`] events; if more are left
//! (the logs grew faster than the last pass caught up), it commits them without
//! switching, lets the live projection go on, and catches up again before trying once
//! more.
//!
//! The planner's statistics know nothing of a generation that did not exist when they were
//! taken: it estimates one row for it, and may then look an order up by
//! `(generation, id)` through another index that starts with the generation, scanning the
//! whole new generation for every event (a rebuild turns quadratic). So a rebuild
//! refreshes the statistics of the read model as its generation grows, and again once it
//! is live.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use eventlog::{EventSource, Position, ReadAhead, StepOutcome, Subscription};
use kernel::db::{self, DbContext, Pool};

use crate::projection::{NAME, OrderProjection, REBUILD_NAME};
use crate::schema::generations;
use crate::states::GenerationState;
use crate::{SCHEMA, cleanup};

/// Events per transaction while rebuilding, applied a batch at a time (see `projection.rs`)
/// while the next batch is read ahead (`Subscription::step_ahead`), so two batches are in
/// memory at once. On 230k events (100k orders): 2500 read ahead replays in 10.6-11.6 s
/// and holds 15 MB more at its peak; 5000 read ahead, 12-13 s and 30 MB; 5000 one batch
/// after the other (before the read ahead), 13.6-14.6 s and 14 MB.
const BATCH: i64 = 2500;
/// Most events the switch applies while it holds the live projection back.
const SWITCH_BUDGET: i64 = BATCH;
/// Statistics are refreshed when this many events were applied, then four times as many,
/// and so on.
const ANALYZE_FIRST: usize = 2_000;
/// A `building` generation untouched this long belongs to a rebuild that died.
const ABANDONED_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("a rebuild of the read model is already running (generation {0})")]
    InProgress(i32),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// A rebuild under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub generation: i32,
    /// Events applied into the new generation so far, and in the logs in all.
    pub applied: i64,
    pub head: i64,
}

fn subscriptions(
    pool: &Pool,
    sources: &[Arc<dyn EventSource>],
    generation: i32,
) -> Vec<Subscription> {
    let projection: Arc<dyn eventlog::Subscriber> = Arc::new(OrderProjection::building(generation));
    sources
        .iter()
        .map(|source| Subscription {
            subscriber: projection.clone(),
            source: source.clone(),
            pool: pool.clone(),
            schema: SCHEMA.name,
        })
        .collect()
}

/// Raw: diesel has no `LOCK TABLE`. Serializes rebuilds claiming a generation.
const LOCK_GENERATIONS: &str = "LOCK TABLE orders_read.generations IN EXCLUSIVE MODE";

/// Claims a new `building` generation (or takes over an abandoned one).
pub(crate) async fn begin(pool: &Pool) -> Result<i32, RebuildError> {
    let mut conn = db::connect(pool).await?;
    db::transaction(&mut conn, async |conn| {
        diesel::sql_query(LOCK_GENERATIONS)
            .execute(conn)
            .await
            .db_context("locking generations")?;
        let building: Option<(i32, chrono::DateTime<Utc>)> = generations::table
            .filter(generations::state.eq(GenerationState::Building))
            .select((generations::id, generations::updated_at))
            .first(conn)
            .await
            .optional()
            .db_context("looking for a running rebuild")?;
        if let Some((generation, updated_at)) = building {
            if Utc::now() - updated_at < ABANDONED_AFTER {
                return Err(RebuildError::InProgress(generation));
            }
            tracing::warn!(generation, "taking over an abandoned rebuild");
            abandon(conn, generation).await?;
        }
        let next: Option<i32> = generations::table
            .select(diesel::dsl::max(generations::id))
            .first(conn)
            .await
            .db_context("numbering")?;
        let generation = next.unwrap_or(0) + 1;
        diesel::insert_into(generations::table)
            .values((
                generations::id.eq(generation),
                generations::state.eq(GenerationState::Building),
            ))
            .execute(conn)
            .await
            .db_context("creating generation")?;
        Ok(generation)
    })
    .await
}

/// Retires an abandoned generation (its rows are deleted later, a batch at a time) and
/// forgets the rebuild's checkpoints and dead letters (else the next rebuild would hand
/// over letters of events it applied). Without its checkpoints, a rebuild that was only
/// slow, not dead, fails at its next step.
async fn abandon(conn: &mut AsyncPgConnection, generation: i32) -> anyhow::Result<()> {
    diesel::update(generations::table.find(generation))
        .set((
            generations::state.eq(GenerationState::Retired),
            generations::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await
        .db_context("retiring an abandoned generation")?;
    eventlog::forget_checkpoints(conn, SCHEMA.name, REBUILD_NAME).await?;
    eventlog::forget_dead_letters(conn, SCHEMA.name, REBUILD_NAME).await
}

/// Replays everything into `generation`, then makes it live. Logs its progress.
pub(crate) async fn run(
    pool: Pool,
    sources: Vec<Arc<dyn EventSource>>,
    generation: i32,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let subscriptions = subscriptions(&pool, &sources, generation);
    for subscription in &subscriptions {
        subscription.register().await?;
    }
    let mut replay = Replay {
        pool: &pool,
        sources: &sources,
        subscriptions: &subscriptions,
        generation,
        applied: 0,
        analyze_at: ANALYZE_FIRST,
        analyzing: None,
        last_log: Instant::now(),
    };
    loop {
        replay.catch_up().await?;
        if switch(&pool, &subscriptions, generation).await? {
            break;
        }
        tracing::info!(
            generation,
            "the logs grew during the switch; catching up again"
        );
    }
    tracing::info!(
        generation,
        seconds = started.elapsed().as_secs_f64(),
        "the rebuilt order read model is live"
    );
    cleanup::delete_retired(&pool).await?;
    analyze(&pool).await
}

/// The replay into a building generation, and what it did so far.
struct Replay<'a> {
    pool: &'a Pool,
    sources: &'a [Arc<dyn EventSource>],
    subscriptions: &'a [Subscription],
    generation: i32,
    /// Events applied, and when statistics are refreshed next.
    applied: usize,
    analyze_at: usize,
    /// The statistics' refresh under way, if any.
    analyzing: Option<tokio::task::JoinHandle<()>>,
    last_log: Instant,
}

impl Replay<'_> {
    /// Applies batches until a pass over every source finds nothing new; logs progress and
    /// refreshes statistics on the way.
    async fn catch_up(&mut self) -> anyhow::Result<()> {
        // Per subscription: where its checkpoint is, and the batch read ahead from there.
        let mut known: Vec<Option<Position>> = vec![None; self.subscriptions.len()];
        let mut ahead: Vec<Option<ReadAhead>> = Vec::new();
        ahead.resize_with(self.subscriptions.len(), || None);
        loop {
            let mut progress = false;
            for (index, subscription) in self.subscriptions.iter().enumerate() {
                let (outcome, position, next) = subscription
                    .step_ahead(known[index], BATCH, ahead[index].take())
                    .await?;
                (known[index], ahead[index]) = (position, next);
                match outcome {
                    StepOutcome::Applied { applied: n, .. } => {
                        progress = true;
                        self.applied += n;
                    }
                    StepOutcome::Failed { attempts } => {
                        tokio::time::sleep(Duration::from_millis(
                            100 * u64::try_from(attempts).unwrap_or(1),
                        ))
                        .await;
                        progress = true;
                    }
                    StepOutcome::Idle | StepOutcome::Busy => {}
                }
            }
            heartbeat(self.pool, self.generation).await?;
            if self.applied >= self.analyze_at
                && self.analyzing.as_ref().is_none_or(|a| a.is_finished())
            {
                // Beside the replay, not in its way: ANALYZE takes no lock that inserts
                // wait for, and samples the whole read model (about half a second at 100k
                // orders) however few rows the generation has yet.
                let pool = self.pool.clone();
                self.analyzing = Some(tokio::spawn(async move {
                    if let Err(error) = analyze(&pool).await {
                        tracing::warn!(error = format!("{error:#}"), "analyzing the read model");
                    }
                }));
                self.analyze_at = self.applied * 4;
            }
            if self.last_log.elapsed() > Duration::from_secs(2) {
                if let Some(p) = progress_of(self.pool, self.sources).await? {
                    tracing::info!(
                        generation = self.generation,
                        applied = p.applied,
                        head = p.head,
                        "rebuilding the order read model"
                    );
                }
                self.last_log = Instant::now();
            }
            if !progress {
                return Ok(());
            }
        }
    }
}

/// Raw: diesel has no `ANALYZE`.
const ANALYZE_READ_MODEL: &str =
    "ANALYZE orders_read.orders, orders_read.order_items, orders_read.users, orders_read.products";

/// Fresh planner statistics for the read model.
async fn analyze(pool: &Pool) -> anyhow::Result<()> {
    let mut conn = db::connect(pool).await?;
    diesel::sql_query(ANALYZE_READ_MODEL)
        .execute(&mut conn)
        .await
        .db_context("analyzing the read model")?;
    Ok(())
}

async fn heartbeat(pool: &Pool, generation: i32) -> anyhow::Result<()> {
    let mut conn = db::connect(pool).await?;
    diesel::update(generations::table.find(generation))
        .set(generations::updated_at.eq(Utc::now()))
        .execute(&mut conn)
        .await
        .db_context("rebuild heartbeat")?;
    Ok(())
}

/// The atomic switch: with the live projection held, apply the rest, swap generations and
/// hand over the checkpoints and the dead letters. If the rest is more than
/// [`SWITCH_BUDGET`] events, it commits what it applied without switching and answers
/// `false`.
async fn switch(
    pool: &Pool,
    subscriptions: &[Subscription],
    generation: i32,
) -> anyhow::Result<bool> {
    let mut conn = db::connect(pool).await?;
    db::transaction(&mut conn, async |conn| {
        eventlog::lock_subscriber(conn, SCHEMA.name, NAME).await?;
        let mut budget = SWITCH_BUDGET;
        loop {
            let mut progress = false;
            for subscription in subscriptions {
                if budget == 0 {
                    return Ok(false);
                }
                if let StepOutcome::Applied { applied, parked } =
                    subscription.step_on(conn, budget).await?
                {
                    progress = true;
                    budget -= i64::try_from(applied + parked)
                        .unwrap_or(budget)
                        .min(budget);
                }
            }
            if !progress {
                break;
            }
        }
        diesel::update(generations::table.filter(generations::state.eq(GenerationState::Live)))
            .set((
                generations::state.eq(GenerationState::Retired),
                generations::updated_at.eq(Utc::now()),
            ))
            .execute(conn)
            .await?;
        let made_live = diesel::update(
            generations::table
                .find(generation)
                .filter(generations::state.eq(GenerationState::Building)),
        )
        .set((
            generations::state.eq(GenerationState::Live),
            generations::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
        anyhow::ensure!(
            made_live == 1,
            "generation {generation} was taken over by another rebuild"
        );
        eventlog::hand_over_checkpoints(conn, SCHEMA.name, REBUILD_NAME, NAME).await?;
        eventlog::hand_over_dead_letters(conn, SCHEMA.name, REBUILD_NAME, NAME).await?;
        anyhow::Ok(true)
    })
    .await
}

/// The running rebuild, if any.
pub(crate) async fn progress_of(
    pool: &Pool,
    sources: &[Arc<dyn EventSource>],
) -> anyhow::Result<Option<Progress>> {
    let mut conn = db::connect(pool).await?;
    let building: Option<i32> = generations::table
        .filter(generations::state.eq(GenerationState::Building))
        .select(generations::id)
        .first(&mut conn)
        .await
        .optional()?;
    drop(conn);
    let Some(generation) = building else {
        return Ok(None);
    };
    let (mut applied, mut head) = (0, 0);
    for subscription in subscriptions(pool, sources, generation) {
        match subscription.status().await {
            Ok(status) => {
                applied += status.applied;
                head += status.head();
            }
            // Not registered yet: nothing applied.
            Err(_) => {
                head += subscription
                    .source
                    .backlog(Default::default())
                    .await?
                    .events
            }
        }
    }
    Ok(Some(Progress {
        generation,
        applied,
        head,
    }))
}
