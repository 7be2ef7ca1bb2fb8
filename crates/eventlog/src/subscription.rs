//! A subscriber and one of its sources: [`Subscription::step`] applies the next batch of
//! events and moves the checkpoint in the same transaction as the subscriber's writes, so
//! a crash keeps both or neither (at least once delivered, exactly once in effect).
//!
//! No transaction of a step waits on anything outside the database: what a subscriber
//! does elsewhere (another module, and through it a payment gateway) is its
//! [`Subscriber::effects`], run before the step's transaction opens, holding no connection
//! or lock; the transaction then only writes the subscriber's own tables and the
//! checkpoint.

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use diesel_async::AsyncPgConnection;
use kernel::db::{Pool, connect, transaction};
use kernel::{Actor, Envelope};
use tracing::Instrument;

use crate::MAX_ATTEMPTS;
use crate::checkpoints::{self, Advance, Key};
use crate::dead_letters;
use crate::read::{Backlog, EventSource, LoggedEvent, Position};

/// Something that reacts to events: a projection, a process manager.
#[async_trait]
pub trait Subscriber: Send + Sync {
    /// A stable name: the checkpoint key.
    fn name(&self) -> &'static str;

    /// Whether everything this subscriber writes is derived from the logs it reads, and
    /// nothing else treats it as a fact (a read model, never a subscriber that appends
    /// events or whose writes others act on). Its steps then commit without waiting for
    /// their WAL flush (`synchronous_commit = off` for the step's transaction): atomic as
    /// ever, but a crash of Postgres may lose the last fraction of a second of its commits,
    /// checkpoints included, and the subscription then applies those events again. A flush
    /// per step is what a placement otherwise queues behind. No by default.
    fn derived(&self) -> bool {
        false
    }

    /// Whether this subscriber takes no step at all for `event` from `source`: neither
    /// [`Subscriber::effects`] nor [`Subscriber::apply`] is called for it, and the
    /// checkpoint moves past it as if it were applied. A step whose events are all ignored
    /// writes nothing but its checkpoint, so it commits without waiting for its WAL flush,
    /// as a derived subscriber's does: a crash may lose that move, and the events are read
    /// again, to the same no effect. (A process manager reads whole logs for a few types;
    /// without this, every other event cost it a flushed commit.) No by default.
    fn ignores(&self, _source: &str, _event: &Envelope) -> bool {
        false
    }

    /// What the event asks of the world outside the subscriber's database (other modules,
    /// and through them a gateway): run by a step before it opens its transaction, with no
    /// connection, lock or transaction of the subscription held, so nothing in the
    /// database waits on it. Events' effects run in log order, and an event is applied
    /// ([`Subscriber::apply`]) only after its effects and those of every event before it
    /// succeeded; an error fails the event as an `apply` error would (retried, then
    /// parked). They run at least once per event and may run for the same event in two
    /// processes at once (both read it before one takes the lock), so they must be
    /// idempotent and safe beside themselves. None by default.
    async fn effects(&self, _source: &str, _event: &Envelope) -> anyhow::Result<()> {
        Ok(())
    }

    /// Applies one event from `source`, inside the subscription's transaction on `conn`
    /// (the subscriber's own schema), after its [`Subscriber::effects`]. Writes only
    /// through `conn`: anything else belongs in `effects`, outside the transaction.
    async fn apply(
        &self,
        conn: &mut AsyncPgConnection,
        source: &str,
        event: &Envelope,
    ) -> anyhow::Result<()>;

    /// Applies several events from `source` (in log order) at once, with the same effect
    /// as [`Subscriber::apply`] on each in turn, inside a savepoint of the subscription's
    /// transaction; `Ok(false)` if this subscriber cannot (the default). After `Ok(false)`
    /// or an error (the savepoint is rolled back) the events are applied one by one, so a
    /// failing event is still retried and parked on its own.
    async fn apply_batch(
        &self,
        _conn: &mut AsyncPgConnection,
        _source: &str,
        _events: &[&Envelope],
    ) -> anyhow::Result<bool> {
        Ok(false)
    }
}

/// A subscriber reading one source; checkpoints live in `schema` of `pool`.
#[derive(Clone)]
pub struct Subscription {
    pub subscriber: Arc<dyn Subscriber>,
    pub source: Arc<dyn EventSource>,
    /// The subscriber's own pool and schema (where its writes and checkpoints live).
    pub pool: Pool,
    pub schema: &'static str,
}

/// What one [`Subscription::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Applied this many events (and parked `parked`); there may be more.
    Applied { applied: usize, parked: usize },
    /// The event after the checkpoint failed; `attempts` so far.
    Failed { attempts: i32 },
    /// Nothing new below the watermark.
    Idle,
    /// Another process holds this subscription right now.
    Busy,
}

/// Where a subscription stands, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionStatus {
    pub subscriber: &'static str,
    pub source: &'static str,
    /// Events applied so far.
    pub applied: i64,
    pub backlog: Backlog,
    /// Failures of the event after the checkpoint, and the last error.
    pub attempts: i32,
    pub last_error: Option<String>,
    /// Events parked for this subscription.
    pub dead_letters: i64,
}

impl SubscriptionStatus {
    /// Where the source's log ends, as the subscription counts: what it applied plus its
    /// backlog.
    pub fn head(&self) -> i64 {
        self.applied + self.backlog.events
    }
}

/// Where the checkpoint `key` in `schema` of `pool` stands on `source`.
pub(crate) async fn status_of(
    pool: &Pool,
    schema: &str,
    key: Key<'static>,
    source: &dyn EventSource,
) -> anyhow::Result<SubscriptionStatus> {
    let mut conn = connect(pool).await?;
    let checkpoint = checkpoints::status(&mut conn, schema, key).await?;
    drop(conn);
    let backlog = source.backlog(checkpoint.position()).await?;
    Ok(SubscriptionStatus {
        subscriber: key.0,
        source: key.1,
        applied: checkpoint.applied,
        backlog,
        attempts: checkpoint.attempts,
        last_error: checkpoint.last_error,
        dead_letters: checkpoint.dead_letters,
    })
}

impl Subscription {
    fn key(&self) -> Key<'static> {
        (self.subscriber.name(), self.source.name())
    }

    pub(crate) fn label(&self) -> String {
        format!("{}<-{}", self.subscriber.name(), self.source.name())
    }

    /// Where this subscription stands now.
    pub async fn status(&self) -> anyhow::Result<SubscriptionStatus> {
        status_of(&self.pool, self.schema, self.key(), self.source.as_ref()).await
    }

    /// Creates the checkpoint row if missing.
    pub async fn register(&self) -> anyhow::Result<()> {
        let mut conn = connect(&self.pool).await?;
        checkpoints::register(&mut conn, self.schema, self.key()).await
    }

    /// [`Subscription::step`] inside the transaction already open on `conn` (as a
    /// savepoint), so a caller can apply events and change other things atomically. The
    /// source is read while `conn` is held, so `conn` must not come from the source's pool
    /// (the rebuild's switch holds a read-model connection and reads the write side's logs):
    /// with that pool exhausted, the read would wait for a connection this step holds. For
    /// subscribers without [`Subscriber::effects`] (a projection): they would run inside
    /// the caller's transaction.
    pub async fn step_on(
        &self,
        conn: &mut AsyncPgConnection,
        limit: i64,
    ) -> anyhow::Result<StepOutcome> {
        transaction(conn, async |conn| {
            let Some(checkpoint) = self.lock(conn, self.subscriber.derived()).await? else {
                return Ok(StepOutcome::Busy);
            };
            let events = self.source.read(checkpoint.position(), limit).await?;
            let effects = self.run_effects(&events).await;
            let (outcome, _) = self
                .apply_events(conn, &checkpoint, &events, effects)
                .await?;
            Ok(outcome)
        })
        .await
    }

    /// Applies the next batch of at most `limit` events in one transaction.
    ///
    /// It never holds a connection of the subscriber's pool while it waits for another,
    /// whatever the pool's size and whether the source reads through the same pool (the
    /// order saga's orders log does): the checkpoint is peeked at and the events are read
    /// first, each on a connection of its own that goes back at once; then one connection
    /// opens the transaction, takes the subscriber's lock and checks that the checkpoint
    /// is still where the events were read from (else another step moved it meanwhile:
    /// `Busy`). The events were below the watermark when read, so they are committed and
    /// follow the checkpoint without a gap; the checkpoint still moves compare-and-set in
    /// the transaction of the subscriber's writes. The events' [`Subscriber::effects`] run
    /// in between, before the transaction, holding nothing.
    pub async fn step(&self, limit: i64) -> anyhow::Result<StepOutcome> {
        Ok(self.step_after(None, limit).await?.0)
    }

    /// [`Subscription::step`] from `known`, where the caller last saw the checkpoint (what
    /// the previous call answered), instead of peeking at it: a checkpoint only moves
    /// forward, so a position another process has since left behind reads events already
    /// applied, the transaction sees the checkpoint elsewhere and the step is tried once
    /// more from there (their effects, idempotent by contract, may run again). Answers the
    /// outcome and where the checkpoint is after it (`None`: unknown, peek next time).
    pub async fn step_after(
        &self,
        known: Option<Position>,
        limit: i64,
    ) -> anyhow::Result<(StepOutcome, Option<Position>)> {
        let (outcome, position, _) = self.step_reading(known, limit, None, false).await?;
        Ok((outcome, position))
    }

    /// [`Subscription::step_after`] for a replay of a long log: it applies `ahead` if
    /// those events start where the checkpoint is (else it reads them again), and while
    /// its transaction applies them, a task of its own reads the `limit` events after
    /// them, which it answers for the next call. So reading a batch, on the source's pool,
    /// overlaps with applying the one before, on the subscriber's. A read ahead is only
    /// ever used from the position it was read after, which the checkpoint reaches only
    /// once every event up to it is applied; the events below the watermark after a
    /// position are the same whenever they are read, so a read ahead is as good as a
    /// fresh one.
    pub async fn step_ahead(
        &self,
        known: Option<Position>,
        limit: i64,
        ahead: Option<ReadAhead>,
    ) -> anyhow::Result<(StepOutcome, Option<Position>, Option<ReadAhead>)> {
        self.step_reading(known, limit, ahead, true).await
    }

    async fn step_reading(
        &self,
        known: Option<Position>,
        limit: i64,
        mut ahead: Option<ReadAhead>,
        read_next: bool,
    ) -> anyhow::Result<(StepOutcome, Option<Position>, Option<ReadAhead>)> {
        let mut start = match known {
            Some(position) => position,
            None => {
                let mut conn = connect(&self.pool).await?;
                let checkpoint = checkpoints::read(&mut conn, self.schema, self.key()).await?;
                self.registered(checkpoint)?.position()
            }
        };
        for _ in 0..2 {
            let events = match ahead.take() {
                // An empty one is read again: events may have committed since.
                Some(read) if read.after == start && !read.events.is_empty() => read.events,
                _ => self.source.read(start, limit).await?,
            };
            let Some(last) = events.last().map(|e| e.position) else {
                return Ok((StepOutcome::Idle, Some(start), None));
            };
            let next = read_next.then(|| {
                let source = self.source.clone();
                tokio::spawn(async move { source.read(last, limit).await })
            });
            let effects = self.run_effects(&events).await;
            let unflushed = self.subscriber.derived() || events.iter().all(|e| self.ignored(e));
            let mut conn = connect(&self.pool).await?;
            let attempt = transaction(&mut conn, async |conn| {
                let Some(checkpoint) = self.lock(conn, unflushed).await? else {
                    return Ok(Attempt::Busy);
                };
                if checkpoint.position() != start {
                    return Ok(Attempt::Moved(checkpoint.position()));
                }
                let (outcome, position) = self
                    .apply_events(conn, &checkpoint, &events, effects)
                    .await?;
                Ok::<_, anyhow::Error>(Attempt::Done(outcome, position))
            })
            .await;
            // A read ahead that failed is read again by the next step, which answers its
            // error then; this step's outcome stands.
            ahead = match next {
                Some(task) => task.await.ok().and_then(Result::ok),
                None => None,
            }
            .map(|events| ReadAhead {
                after: last,
                events,
            });
            match attempt? {
                Attempt::Busy => return Ok((StepOutcome::Busy, None, ahead)),
                Attempt::Moved(position) => start = position,
                Attempt::Done(outcome, position) => return Ok((outcome, Some(position), ahead)),
            }
        }
        Ok((StepOutcome::Busy, None, ahead))
    }

    /// Runs the events' [`Subscriber::effects`] in log order, panics caught, up to the
    /// first that fails.
    async fn run_effects(&self, events: &[LoggedEvent]) -> Effects {
        for (done, logged) in events.iter().enumerate() {
            if self.ignored(logged) {
                continue;
            }
            if let Err(error) = self.effects_of(&logged.envelope).await {
                return Effects {
                    done,
                    failed: Some(error),
                };
            }
        }
        Effects {
            done: events.len(),
            failed: None,
        }
    }

    /// Whether the subscriber takes no step for this event ([`Subscriber::ignores`]).
    fn ignored(&self, logged: &LoggedEvent) -> bool {
        self.subscriber
            .ignores(self.source.name(), &logged.envelope)
    }

    /// [`Subscriber::effects`] of one event, panics caught, in the event's span.
    async fn effects_of(&self, event: &Envelope) -> anyhow::Result<()> {
        let (name, source) = self.key();
        let span = tracing::info_span!(
            "effects", subscriber = name, source, event_type = event.event_type, event_id = %event.event_id
        );
        // Like the transaction's steps, the system's work for the event's request.
        let context = kernel::context::Context::new(Actor::SYSTEM, event.correlation_id.clone());
        let effects = self.subscriber.effects(source, event).instrument(span);
        kernel::catch_panic(kernel::context::scope(context, effects))
            .await
            .unwrap_or_else(|panic| Err(anyhow::anyhow!("subscriber panicked: {panic}")))
    }

    /// The checkpoint, or the error that the subscription was never registered.
    fn registered(
        &self,
        checkpoint: Option<checkpoints::Checkpoint>,
    ) -> anyhow::Result<checkpoints::Checkpoint> {
        checkpoint.with_context(|| {
            format!(
                "no checkpoint for {}; register the subscription first",
                self.label()
            )
        })
    }

    /// Takes the subscriber's lock for the transaction on `conn` and reads the checkpoint;
    /// `None` if another transaction holds the lock. `unflushed`: the transaction commits
    /// without waiting for its WAL flush.
    async fn lock(
        &self,
        conn: &mut AsyncPgConnection,
        unflushed: bool,
    ) -> anyhow::Result<Option<checkpoints::Checkpoint>> {
        // One batch of this subscriber at a time, whichever source and process: a
        // transaction-scoped advisory lock per subscriber. Per subscriber, not per source,
        // because its sources meet in the same tables (an order row and its user's name)
        // and two concurrent batches would each miss the other's uncommitted write. Unlike
        // a row lock it assigns no transaction id, so a long batch does not hold back the
        // watermark (`xmin`) that every reader in the cluster waits on.
        let name = self.subscriber.name();
        if !checkpoints::try_lock_subscriber(conn, self.schema, name, unflushed).await? {
            return Ok(None);
        }
        let checkpoint = checkpoints::read(conn, self.schema, self.key()).await?;
        self.registered(checkpoint).map(Some)
    }

    /// Applies `events` (read after `checkpoint`, below the watermark) in the transaction
    /// on `conn`, which holds the subscriber's lock, and moves the checkpoint past those
    /// applied or parked: those whose effects are done, then the one whose effects failed,
    /// failed. Answers the outcome and where the checkpoint now is.
    async fn apply_events(
        &self,
        conn: &mut AsyncPgConnection,
        checkpoint: &checkpoints::Checkpoint,
        events: &[LoggedEvent],
        effects: Effects,
    ) -> anyhow::Result<(StepOutcome, Position)> {
        let start = checkpoint.position();
        if events.is_empty() {
            return Ok((StepOutcome::Idle, start));
        }
        let (mut position, mut applied, mut parked) = (start, 0usize, 0usize);
        let (mut attempts, mut last_error) = (0, None::<String>);
        let ready = &events[..effects.done];
        if ready.len() > 1 && self.apply_batch(conn, ready).await {
            position = ready.last().map_or(start, |e| e.position);
            applied = ready.len();
        }
        let mut effects_failed = effects.failed;
        for (index, logged) in events.iter().enumerate().skip(applied) {
            let event = &logged.envelope;
            let outcome = if index < effects.done && self.ignored(logged) {
                Ok(())
            } else if index < effects.done {
                self.apply_one(conn, event).await
            } else {
                Err(effects_failed
                    .take()
                    .unwrap_or_else(|| anyhow::anyhow!("the effects of an earlier event failed")))
            };
            match outcome {
                Ok(()) => {
                    position = logged.position;
                    applied += 1;
                }
                Err(error) => {
                    let error = format!("{error:#}");
                    attempts = if applied == 0 {
                        checkpoint.attempts + 1
                    } else {
                        1
                    };
                    if attempts >= MAX_ATTEMPTS {
                        tracing::error!(
                            subscription = self.label(), event_id = %event.event_id,
                            event_type = event.event_type, error, "parking event as a dead letter"
                        );
                        dead_letters::park(conn, self.schema, self.key(), event, &error).await?;
                        position = logged.position;
                        parked += 1;
                        attempts = 0;
                    } else {
                        tracing::warn!(
                            subscription = self.label(), event_id = %event.event_id,
                            event_type = event.event_type, attempts, error, "event failed; will retry"
                        );
                        last_error = Some(error);
                    }
                    break;
                }
            }
        }
        let advance = Advance {
            from: start,
            to: position,
            applied: applied as i64,
            attempts,
            last_error,
        };
        let moved = checkpoints::advance(conn, self.schema, self.key(), advance).await?;
        anyhow::ensure!(moved, "checkpoint of {} moved under us", self.label());
        if applied == 0 && parked == 0 {
            return Ok((StepOutcome::Failed { attempts }, position));
        }
        Ok((StepOutcome::Applied { applied, parked }, position))
    }

    /// [`Subscriber::apply`] in a savepoint; a panic fails the event like an error would,
    /// and the delivery task lives on.
    async fn apply_one(
        &self,
        conn: &mut AsyncPgConnection,
        event: &Envelope,
    ) -> anyhow::Result<()> {
        let (name, source) = self.key();
        let span = tracing::info_span!(
            "event", subscriber = name, source, event_type = event.event_type, event_id = %event.event_id
        );
        // The steps taken because of the event are the system's, for the event's request.
        let context = kernel::context::Context::new(Actor::SYSTEM, event.correlation_id.clone());
        transaction(conn, async |conn| {
            let apply = self.subscriber.apply(conn, source, event).instrument(span);
            kernel::catch_panic(kernel::context::scope(context, apply))
                .await
                .unwrap_or_else(|panic| Err(anyhow::anyhow!("subscriber panicked: {panic}")))
        })
        .await
    }

    /// [`Subscriber::apply_batch`] of the events not ignored, in a savepoint; whether it
    /// applied them all.
    async fn apply_batch(&self, conn: &mut AsyncPgConnection, events: &[LoggedEvent]) -> bool {
        let (name, source) = self.key();
        let batch: Vec<&Envelope> = events
            .iter()
            .filter(|e| !self.ignored(e))
            .map(|e| &e.envelope)
            .collect();
        if batch.is_empty() {
            return true;
        }
        let span = tracing::info_span!("events", subscriber = name, source, count = batch.len());
        let result = transaction(conn, async |conn| {
            let apply = self
                .subscriber
                .apply_batch(conn, source, &batch)
                .instrument(span);
            kernel::catch_panic(apply)
                .await
                .unwrap_or_else(|panic| Err(anyhow::anyhow!("subscriber panicked: {panic}")))
        })
        .await;
        match result {
            Ok(applied) => applied,
            Err(error) => {
                tracing::debug!(
                    subscription = self.label(),
                    error = format!("{error:#}"),
                    "batch failed; applying its events one by one"
                );
                false
            }
        }
    }

    /// Applies a parked event again; on success it leaves the dead letters. Returns
    /// whether a dead letter with that id belonged to this subscription. Its
    /// [`Subscriber::effects`] run first, outside any transaction; then it waits for the
    /// subscriber's lock, so it never runs beside a batch of the same subscriber, and
    /// applies the event as delivery does, in a savepoint with panics caught: a panic is an
    /// error, and the letter stays.
    pub async fn retry_dead_letter(&self, id: i64) -> anyhow::Result<bool> {
        let mut conn = connect(&self.pool).await?;
        let Some(letter) = dead_letters::take(&mut conn, self.schema, self.key(), id).await? else {
            return Ok(false);
        };
        drop(conn);
        let envelope: Envelope =
            serde_json::from_value(letter.event).context("stored dead letter")?;
        self.effects_of(&envelope).await?;
        let mut conn = connect(&self.pool).await?;
        transaction(&mut conn, async |conn| {
            checkpoints::lock_subscriber(conn, self.schema, self.subscriber.name()).await?;
            if dead_letters::take(conn, self.schema, self.key(), id)
                .await?
                .is_none()
            {
                // Retried meanwhile by someone else.
                return Ok(false);
            }
            self.apply_one(conn, &envelope).await?;
            dead_letters::remove(conn, self.schema, id).await?;
            Ok(true)
        })
        .await
    }
}

/// Events read for a later [`Subscription::step_ahead`]: those after `after`, below the
/// watermark when they were read.
pub struct ReadAhead {
    after: Position,
    events: Vec<LoggedEvent>,
}

impl ReadAhead {
    /// How many events were read ahead.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// What one try of [`Subscription::step_after`]'s transaction found.
enum Attempt {
    /// Another transaction holds the subscriber.
    Busy,
    /// The checkpoint is not where the events were read from, but here.
    Moved(Position),
    /// Applied (or failed) as told, the checkpoint now here.
    Done(StepOutcome, Position),
}

/// How far the effects of a step's events got: the first `done` succeeded, and the next
/// one failed with `failed`.
struct Effects {
    done: usize,
    failed: Option<anyhow::Error>,
}
