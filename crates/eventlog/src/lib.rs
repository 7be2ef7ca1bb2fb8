//! The event log: append in the writer's transaction, read below the watermark, deliver to
//! subscribers exactly once in effect.
//!
//! - **Append.** [`append`] inserts into `<schema>.events` on the caller's connection, so
//!   the events commit or roll back with the state change (transactional outbox), and
//!   `pg_notify`s [`CHANNEL`] on commit.
//! - **Watermark.** Events are ordered by `(xid, seq)`: the writing transaction's id, then
//!   insertion order. A reader returns only events whose `xid` is below
//!   `pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction still running, so
//!   an event whose transaction commits late can never be passed over: until it commits,
//!   nothing after it is read. Writers lock the aggregate before their first write, so a
//!   later version of an aggregate always has a larger `xid`.
//! - **Checkpoints.** A subscriber's position per source is a row of its own schema's
//!   `checkpoints`, moved compare-and-set in the same transaction as the subscriber's
//!   writes. One batch of a subscriber runs at a time, across its sources and across
//!   processes: it holds a transaction-scoped advisory lock per subscriber
//!   (`pg_try_advisory_xact_lock`; others skip and retry), which, unlike `FOR UPDATE`,
//!   takes no transaction id, so a slow batch never holds back the watermark other readers
//!   wait on. Each process runs one task per subscriber, cycling through its sources.
//!   Each event is applied in a savepoint; a failure is retried with backoff and, after
//!   [`MAX_ATTEMPTS`], parked in `dead_letters` so the subscription moves on.
//! - **Wake-up.** One `LISTEN` connection per process wakes every subscription; polling
//!   covers lost notifications and outages.
//!
//! This crate knows Postgres and the envelope, and never a module: what an event means is
//! the subscriber's business.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use kernel::db::{Pool, connect, transaction};
use kernel::{Envelope, NewEvent};

/// The `NOTIFY` channel every event log signals on commit.
/// The event-log tables (`events`, `checkpoints`, `dead_letters`), applied into every
/// schema that keeps a log or a subscriber's checkpoints, before the schema's own
/// migrations (see `kernel::db::Schema::migrations`).
pub const MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("../../migrations/eventlog");

pub const CHANNEL: &str = "emporium_events";

/// Failures of one event before it is parked as a dead letter.
pub const MAX_ATTEMPTS: i32 = 5;

/// A place in one event log: the `(xid, seq)` of an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub xid: i64,
    pub seq: i64,
}

/// An event as read back from the log.
#[derive(Debug, Clone)]
pub struct Stored {
    pub position: Position,
    pub envelope: Envelope,
}

/// Appends `events` to `<schema>.events` on `conn`, inside the caller's transaction.
pub async fn append(
    conn: &mut AsyncPgConnection,
    schema: &str,
    events: &[NewEvent],
) -> anyhow::Result<Vec<Envelope>> {
    let now = Utc::now();
    let mut written = Vec::with_capacity(events.len());
    for event in events {
        let envelope = Envelope {
            event_id: Uuid::now_v7(),
            event_type: event.event_type.to_owned(),
            aggregate_id: event.aggregate_id,
            aggregate_version: event.aggregate_version,
            occurred_at: now,
            schema_version: 1,
            payload: event.payload.clone(),
        };
        diesel::sql_query(format!(
            "INSERT INTO {schema}.events (event_id, event_type, aggregate_id, aggregate_version, occurred_at, \
             schema_version, payload) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind::<SqlUuid, _>(envelope.event_id)
        .bind::<Text, _>(&envelope.event_type)
        .bind::<SqlUuid, _>(envelope.aggregate_id)
        .bind::<BigInt, _>(envelope.aggregate_version)
        .bind::<Timestamptz, _>(envelope.occurred_at)
        .bind::<Integer, _>(envelope.schema_version)
        .bind::<Jsonb, _>(&envelope.payload)
        .execute(conn)
        .await
        .with_context(|| format!("appending {} to {schema}.events", envelope.event_type))?;
        written.push(envelope);
    }
    if !written.is_empty() {
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(CHANNEL)
            .bind::<Text, _>(schema)
            .execute(conn)
            .await
            .context("notifying event subscribers")?;
    }
    Ok(written)
}

#[derive(diesel::QueryableByName)]
struct EventRow {
    #[diesel(sql_type = BigInt)]
    xid: i64,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = SqlUuid)]
    event_id: Uuid,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = SqlUuid)]
    aggregate_id: Uuid,
    #[diesel(sql_type = BigInt)]
    aggregate_version: i64,
    #[diesel(sql_type = Timestamptz)]
    occurred_at: DateTime<Utc>,
    #[diesel(sql_type = Integer)]
    schema_version: i32,
    #[diesel(sql_type = Jsonb)]
    payload: serde_json::Value,
}

/// Reads up to `limit` events after `after`, only below the watermark, in log order.
///
/// The order names the table's columns (`events.xid`): a bare `xid` would be the output
/// column, the `bigint` made of it, which no index has, so every read would sort the
/// whole log.
pub async fn read(
    conn: &mut AsyncPgConnection,
    schema: &str,
    after: Position,
    limit: i64,
) -> anyhow::Result<Vec<Stored>> {
    let rows: Vec<EventRow> = diesel::sql_query(format!(
        "SELECT xid::text::bigint AS xid, seq, event_id, event_type, aggregate_id, aggregate_version, \
         occurred_at, schema_version, payload FROM {schema}.events \
         WHERE (xid, seq) > ($1::text::xid8, $2) AND xid < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY events.xid, events.seq LIMIT $3"
    ))
    .bind::<BigInt, _>(after.xid)
    .bind::<BigInt, _>(after.seq)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
    .with_context(|| format!("reading {schema}.events"))?;
    Ok(rows
        .into_iter()
        .map(|r| Stored {
            position: Position {
                xid: r.xid,
                seq: r.seq,
            },
            envelope: Envelope {
                event_id: r.event_id,
                event_type: r.event_type,
                aggregate_id: r.aggregate_id,
                aggregate_version: r.aggregate_version,
                occurred_at: r.occurred_at,
                schema_version: r.schema_version,
                payload: r.payload,
            },
        })
        .collect())
}

/// One module's event log, read through that module's own pool.
#[async_trait]
pub trait EventSource: Send + Sync {
    /// The source's name: its schema.
    fn name(&self) -> &'static str;
    async fn read(&self, after: Position, limit: i64) -> anyhow::Result<Vec<Stored>>;
    /// What lies after `after`: how many events, and when the oldest of them happened.
    async fn backlog(&self, after: Position) -> anyhow::Result<Backlog>;
}

/// What a subscription has yet to apply from one source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Events after the position.
    pub events: i64,
    /// When the oldest of them happened.
    pub oldest: Option<DateTime<Utc>>,
    /// Events in the whole log.
    pub total: i64,
}

/// The event log of `schema`, read with `pool` (that module's own role).
#[derive(Clone)]
pub struct PgEventSource {
    pub schema: &'static str,
    pub pool: Pool,
}

#[async_trait]
impl EventSource for PgEventSource {
    fn name(&self) -> &'static str {
        self.schema
    }

    async fn read(&self, after: Position, limit: i64) -> anyhow::Result<Vec<Stored>> {
        let mut conn = connect(&self.pool).await?;
        read(&mut conn, self.schema, after, limit).await
    }

    async fn backlog(&self, after: Position) -> anyhow::Result<Backlog> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = BigInt)]
            events: i64,
            #[diesel(sql_type = Nullable<Timestamptz>)]
            oldest: Option<DateTime<Utc>>,
            #[diesel(sql_type = BigInt)]
            total: i64,
        }
        let row: Row = diesel::sql_query(format!(
            "SELECT count(*) FILTER (WHERE (xid, seq) > ($1::text::xid8, $2)) AS events, \
             min(occurred_at) FILTER (WHERE (xid, seq) > ($1::text::xid8, $2)) AS oldest, count(*) AS total \
             FROM {}.events",
            self.schema
        ))
        .bind::<BigInt, _>(after.xid)
        .bind::<BigInt, _>(after.seq)
        .get_result(&mut connect(&self.pool).await?)
        .await
        .context("measuring backlog")?;
        Ok(Backlog {
            events: row.events,
            oldest: row.oldest,
            total: row.total,
        })
    }
}

/// Something that reacts to events: a projection, a process manager.
#[async_trait]
pub trait Subscriber: Send + Sync {
    /// A stable name: the checkpoint key.
    fn name(&self) -> &'static str;

    /// Applies one event from `source`, inside the subscription's transaction on `conn`
    /// (the subscriber's own schema). Effects outside `conn` must be idempotent: after a
    /// crash the same event is delivered again.
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
pub enum Step {
    /// Applied this many events (and parked `parked`); there may be more.
    Applied { applied: usize, parked: usize },
    /// The event after the checkpoint failed; `attempts` so far.
    Failed { attempts: i32 },
    /// Nothing new below the watermark.
    Idle,
    /// Another process holds this subscription right now.
    Busy,
}

#[derive(diesel::QueryableByName)]
struct CheckpointRow {
    #[diesel(sql_type = BigInt)]
    xid: i64,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

/// The advisory-lock key of a subscriber: one batch of it at a time, whatever source and
/// process.
const SUBSCRIBER_LOCK: &str =
    "SELECT {fn}(hashtextextended('emporium.subscriber.' || $1 || '.' || $2, 0))";

async fn try_lock_subscriber(
    conn: &mut AsyncPgConnection,
    schema: &str,
    name: &str,
) -> anyhow::Result<bool> {
    #[derive(diesel::QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        locked: bool,
    }
    let sql = SUBSCRIBER_LOCK.replace("{fn}", "pg_try_advisory_xact_lock") + " AS locked";
    let lock: Locked = diesel::sql_query(sql)
        .bind::<Text, _>(schema)
        .bind::<Text, _>(name)
        .get_result(conn)
        .await
        .context("locking subscriber")?;
    Ok(lock.locked)
}

/// Waits until no batch of subscriber `name` runs, and keeps any from starting until the
/// transaction on `conn` ends.
pub async fn lock_subscriber(
    conn: &mut AsyncPgConnection,
    schema: &str,
    name: &str,
) -> anyhow::Result<()> {
    diesel::sql_query(SUBSCRIBER_LOCK.replace("{fn}", "pg_advisory_xact_lock"))
        .bind::<Text, _>(schema)
        .bind::<Text, _>(name)
        .execute(conn)
        .await
        .context("waiting for subscriber lock")?;
    Ok(())
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

impl Subscription {
    fn label(&self) -> String {
        format!("{}<-{}", self.subscriber.name(), self.source.name())
    }

    /// Where this subscription stands now.
    pub async fn status(&self) -> anyhow::Result<SubscriptionStatus> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = BigInt)]
            xid: i64,
            #[diesel(sql_type = BigInt)]
            seq: i64,
            #[diesel(sql_type = BigInt)]
            applied: i64,
            #[diesel(sql_type = Integer)]
            attempts: i32,
            #[diesel(sql_type = Nullable<Text>)]
            last_error: Option<String>,
            #[diesel(sql_type = BigInt)]
            dead_letters: i64,
        }
        let row: Row = diesel::sql_query(format!(
            "SELECT xid::text::bigint AS xid, seq, applied, attempts, last_error, \
             (SELECT count(*) FROM {0}.dead_letters d WHERE d.subscriber = c.subscriber AND d.source = c.source) \
             AS dead_letters FROM {0}.checkpoints c WHERE subscriber = $1 AND source = $2",
            self.schema
        ))
        .bind::<Text, _>(self.subscriber.name())
        .bind::<Text, _>(self.source.name())
        .get_result(&mut connect(&self.pool).await?)
        .await
        .context("reading checkpoint")?;
        let backlog = self
            .source
            .backlog(Position {
                xid: row.xid,
                seq: row.seq,
            })
            .await?;
        Ok(SubscriptionStatus {
            subscriber: self.subscriber.name(),
            source: self.source.name(),
            applied: row.applied,
            backlog,
            attempts: row.attempts,
            last_error: row.last_error,
            dead_letters: row.dead_letters,
        })
    }

    /// Creates the checkpoint row if missing.
    pub async fn register(&self) -> anyhow::Result<()> {
        diesel::sql_query(format!(
            "INSERT INTO {}.checkpoints (subscriber, source) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            self.schema
        ))
        .bind::<Text, _>(self.subscriber.name())
        .bind::<Text, _>(self.source.name())
        .execute(&mut connect(&self.pool).await?)
        .await
        .context("registering checkpoint")?;
        Ok(())
    }

    /// [`Subscription::step`] inside the transaction already open on `conn` (as a
    /// savepoint), so a caller can apply events and change other things atomically.
    pub async fn step_on(&self, conn: &mut AsyncPgConnection, limit: i64) -> anyhow::Result<Step> {
        transaction(conn, async |conn| self.step_in(conn, limit).await).await
    }

    /// Applies the next batch of at most `limit` events in one transaction.
    pub async fn step(&self, limit: i64) -> anyhow::Result<Step> {
        let mut conn = connect(&self.pool).await?;
        transaction(&mut conn, async |conn| self.step_in(conn, limit).await).await
    }

    async fn step_in(&self, conn: &mut AsyncPgConnection, limit: i64) -> anyhow::Result<Step> {
        let (name, source) = (self.subscriber.name(), self.source.name());
        // One batch of this subscriber at a time, whichever source and process: a
        // transaction-scoped advisory lock per subscriber. Per subscriber, not per source,
        // because its sources meet in the same tables (an order row and its user's name)
        // and two concurrent batches would each miss the other's uncommitted write. Unlike
        // a row lock it assigns no transaction id, so a long batch does not hold back the
        // watermark (`xmin`) that every reader in the cluster waits on.
        let locked = try_lock_subscriber(conn, self.schema, name).await?;
        if !locked {
            return Ok(Step::Busy);
        }
        let checkpoint: Option<CheckpointRow> = diesel::sql_query(format!(
            "SELECT xid::text::bigint AS xid, seq, attempts FROM {}.checkpoints \
             WHERE subscriber = $1 AND source = $2",
            self.schema
        ))
        .bind::<Text, _>(name)
        .bind::<Text, _>(source)
        .get_result(conn)
        .await
        .optional_row()
        .context("reading checkpoint")?;
        let Some(checkpoint) = checkpoint else {
            anyhow::bail!(
                "no checkpoint for {}; register the subscription first",
                self.label()
            );
        };
        let start = Position {
            xid: checkpoint.xid,
            seq: checkpoint.seq,
        };
        let events = self.source.read(start, limit).await?;
        if events.is_empty() {
            return Ok(Step::Idle);
        }
        let (mut position, mut applied, mut parked) = (start, 0usize, 0usize);
        let (mut attempts, mut last_error) = (0, None::<String>);
        if events.len() > 1 && self.apply_batch(conn, &events).await {
            position = events.last().map_or(start, |e| e.position);
            applied = events.len();
        }
        for stored in &events[applied..] {
            let event = &stored.envelope;
            let span = tracing::info_span!(
                "event", subscriber = name, source, event_type = event.event_type, event_id = %event.event_id
            );
            let result = transaction(conn, async |conn| {
                // A panicking subscriber fails this event like an error would; the delivery
                // task lives on.
                let apply = self.subscriber.apply(conn, source, event).instrument(span);
                match futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(apply))
                    .await
                {
                    Ok(result) => result,
                    Err(panic) => Err(anyhow::anyhow!(
                        "subscriber panicked: {}",
                        panic_message(&*panic)
                    )),
                }
            })
            .await;
            match result {
                Ok(()) => {
                    position = stored.position;
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
                            subscription = self.label(), event_id = %stored.envelope.event_id,
                            event_type = stored.envelope.event_type, error, "parking event as a dead letter"
                        );
                        diesel::sql_query(format!(
                            "INSERT INTO {}.dead_letters (subscriber, source, event, error) VALUES ($1, $2, $3, $4)",
                            self.schema
                        ))
                        .bind::<Text, _>(name)
                        .bind::<Text, _>(source)
                        .bind::<Jsonb, _>(serde_json::to_value(&stored.envelope)?)
                        .bind::<Text, _>(&error)
                        .execute(conn)
                        .await
                        .context("parking dead letter")?;
                        position = stored.position;
                        parked += 1;
                        attempts = 0;
                    } else {
                        tracing::warn!(
                            subscription = self.label(), event_id = %stored.envelope.event_id,
                            event_type = stored.envelope.event_type, attempts, error, "event failed; will retry"
                        );
                        last_error = Some(error);
                    }
                    break;
                }
            }
        }
        let moved = diesel::sql_query(format!(
            "UPDATE {}.checkpoints SET xid = $3::text::xid8, seq = $4, applied = applied + $5, attempts = $6, \
             last_error = $7, updated_at = now() \
             WHERE subscriber = $1 AND source = $2 AND xid = $8::text::xid8 AND seq = $9",
            self.schema
        ))
        .bind::<Text, _>(name)
        .bind::<Text, _>(source)
        .bind::<BigInt, _>(position.xid)
        .bind::<BigInt, _>(position.seq)
        .bind::<BigInt, _>(applied as i64)
        .bind::<Integer, _>(attempts)
        .bind::<Nullable<Text>, _>(last_error)
        .bind::<BigInt, _>(start.xid)
        .bind::<BigInt, _>(start.seq)
        .execute(conn)
        .await
        .context("moving checkpoint")?;
        anyhow::ensure!(moved == 1, "checkpoint of {} moved under us", self.label());
        if applied == 0 && parked == 0 {
            return Ok(Step::Failed { attempts });
        }
        Ok(Step::Applied { applied, parked })
    }
}

impl Subscription {
    /// [`Subscriber::apply_batch`] in a savepoint; whether it applied them all.
    async fn apply_batch(&self, conn: &mut AsyncPgConnection, events: &[Stored]) -> bool {
        let (name, source) = (self.subscriber.name(), self.source.name());
        let batch: Vec<&Envelope> = events.iter().map(|e| &e.envelope).collect();
        let span = tracing::info_span!("events", subscriber = name, source, count = batch.len());
        let result = transaction(conn, async |conn| {
            let apply = self
                .subscriber
                .apply_batch(conn, source, &batch)
                .instrument(span);
            match futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(apply)).await {
                Ok(result) => result,
                Err(panic) => Err(anyhow::anyhow!(
                    "subscriber panicked: {}",
                    panic_message(&*panic)
                )),
            }
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
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".to_owned())
}

trait OptionalRow<T> {
    fn optional_row(self) -> Result<Option<T>, diesel::result::Error>;
}

impl<T> OptionalRow<T> for Result<T, diesel::result::Error> {
    fn optional_row(self) -> Result<Option<T>, diesel::result::Error> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(diesel::result::Error::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Delivery settings.
#[derive(Clone, Copy, Debug)]
pub struct DispatchSettings {
    /// Poll even without a notification this often.
    pub poll_interval: Duration,
    /// Events per transaction.
    pub batch_size: i64,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        DispatchSettings {
            poll_interval: Duration::from_millis(250),
            batch_size: 200,
        }
    }
}

/// Running delivery: a listener and one task per subscription. Dropping it stops them.
pub struct Dispatcher {
    tasks: Vec<JoinHandle<()>>,
}

impl Dispatcher {
    /// Registers every subscription's checkpoint, then starts delivering. `listen_url` is
    /// the write database, where events are appended and notified.
    pub async fn start(
        listen_url: &str,
        subscriptions: Vec<Subscription>,
        settings: DispatchSettings,
    ) -> anyhow::Result<Dispatcher> {
        for subscription in &subscriptions {
            subscription.register().await?;
        }
        let (wake_tx, wake_rx) = watch::channel(0u64);
        let mut tasks = vec![tokio::spawn(listen(listen_url.to_owned(), wake_tx))];
        let mut by_subscriber: Vec<Vec<Subscription>> = Vec::new();
        for subscription in subscriptions {
            let same = |group: &&mut Vec<Subscription>| {
                group[0].schema == subscription.schema
                    && group[0].subscriber.name() == subscription.subscriber.name()
            };
            match by_subscriber.iter_mut().find(same) {
                Some(group) => group.push(subscription),
                None => by_subscriber.push(vec![subscription]),
            }
        }
        for group in by_subscriber {
            tasks.push(tokio::spawn(deliver(group, wake_rx.clone(), settings)));
        }
        Ok(Dispatcher { tasks })
    }

    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Turns notifications on [`CHANNEL`] into wake-ups; reconnects after failures.
async fn listen(url: String, wake: watch::Sender<u64>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let result: anyhow::Result<()> = async {
            let mut conn = AsyncPgConnection::establish(&url)
                .await
                .context("listener connect")?;
            diesel::sql_query(format!("LISTEN {CHANNEL}"))
                .execute(&mut conn)
                .await
                .context("LISTEN")?;
            let mut notifications = std::pin::pin!(conn.notifications_stream());
            while let Some(notification) = notifications.next().await {
                notification.context("listener")?;
                wake.send_modify(|n| *n = n.wrapping_add(1));
                backoff = Duration::from_millis(100);
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(
                error = format!("{error:#}"),
                "event listener lost its connection; polling until it is back"
            );
        }
        // Whatever was missed while disconnected, the subscriptions' polling finds.
        wake.send_modify(|n| *n = n.wrapping_add(1));
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Delivers one subscriber's subscriptions forever: steps each source in turn while there
/// is work, waits for a wake-up or the poll interval when all are idle, backs off after
/// failures.
async fn deliver(
    subscriptions: Vec<Subscription>,
    mut wake: watch::Receiver<u64>,
    settings: DispatchSettings,
) {
    let mut failures = 0u32;
    loop {
        wake.borrow_and_update();
        let (mut progress, mut busy, mut pause) = (false, false, None);
        for subscription in &subscriptions {
            match subscription.step(settings.batch_size).await {
                Ok(Step::Applied { .. }) => progress = true,
                Ok(Step::Idle) => {}
                Ok(Step::Busy) => busy = true,
                Ok(Step::Failed { attempts }) => {
                    pause = pause.max(Some(backoff(u32::try_from(attempts).unwrap_or(1))));
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(
                        subscription = subscription.label(),
                        error = format!("{error:#}"),
                        "delivery failed; retrying"
                    );
                    pause = pause.max(Some(backoff(failures)));
                }
            }
        }
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        } else if progress {
            failures = 0;
        } else if busy {
            // Another process holds this subscriber; it may let go any moment.
            let _ = tokio::time::timeout(
                settings.poll_interval.min(Duration::from_millis(50)),
                wake.changed(),
            )
            .await;
        } else {
            failures = 0;
            let _ = tokio::time::timeout(settings.poll_interval, wake.changed()).await;
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

/// Checkpoint handover, for a subscriber rebuilt under another name: in the caller's
/// transaction, `to` takes `from`'s position on every source they share, with its attempts
/// cleared, and `from`'s checkpoints are deleted. Hold both subscribers' locks.
pub async fn hand_over_checkpoints(
    conn: &mut AsyncPgConnection,
    schema: &str,
    from: &str,
    to: &str,
) -> anyhow::Result<()> {
    // Raw: an `UPDATE ... FROM` the same table under another alias, in a schema named at
    // run time.
    diesel::sql_query(format!(
        "UPDATE {schema}.checkpoints c SET xid = r.xid, seq = r.seq, applied = r.applied, \
         attempts = 0, last_error = NULL, updated_at = now() FROM {schema}.checkpoints r \
         WHERE c.subscriber = $1 AND r.subscriber = $2 AND r.source = c.source"
    ))
    .bind::<Text, _>(to)
    .bind::<Text, _>(from)
    .execute(conn)
    .await
    .with_context(|| format!("handing checkpoints of {from} to {to} in {schema}"))?;
    forget_checkpoints(conn, schema, from).await
}

/// Deletes every checkpoint of `subscriber` (a rebuild that is discarded or handed over).
pub async fn forget_checkpoints(
    conn: &mut AsyncPgConnection,
    schema: &str,
    subscriber: &str,
) -> anyhow::Result<()> {
    diesel::sql_query(format!(
        "DELETE FROM {schema}.checkpoints WHERE subscriber = $1"
    ))
    .bind::<Text, _>(subscriber)
    .execute(conn)
    .await
    .with_context(|| format!("deleting checkpoints of {subscriber} in {schema}"))?;
    Ok(())
}

/// A parked event.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct DeadLetter {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub subscriber: String,
    #[diesel(sql_type = Text)]
    pub source: String,
    #[diesel(sql_type = Jsonb)]
    pub event: serde_json::Value,
    #[diesel(sql_type = Text)]
    pub error: String,
    #[diesel(sql_type = Timestamptz)]
    pub parked_at: DateTime<Utc>,
}

/// The dead letters kept in `schema`.
pub async fn dead_letters(pool: &Pool, schema: &str) -> anyhow::Result<Vec<DeadLetter>> {
    diesel::sql_query(format!(
        "SELECT id, subscriber, source, event, error, parked_at FROM {schema}.dead_letters ORDER BY id"
    ))
    .load(&mut connect(pool).await?)
    .await
    .context("listing dead letters")
}

impl Subscription {
    /// Applies a parked event again; on success it leaves the dead letters. Returns
    /// whether a dead letter with that id belonged to this subscription.
    pub async fn retry_dead_letter(&self, id: i64) -> anyhow::Result<bool> {
        let mut conn = connect(&self.pool).await?;
        transaction(&mut conn, async |conn| {
            let letter: Option<DeadLetter> = diesel::sql_query(format!(
                "SELECT id, subscriber, source, event, error, parked_at FROM {}.dead_letters \
                 WHERE id = $1 AND subscriber = $2 AND source = $3 FOR UPDATE",
                self.schema
            ))
            .bind::<BigInt, _>(id)
            .bind::<Text, _>(self.subscriber.name())
            .bind::<Text, _>(self.source.name())
            .get_result(conn)
            .await
            .optional_row()?;
            let Some(letter) = letter else {
                return Ok(false);
            };
            let envelope: Envelope =
                serde_json::from_value(letter.event).context("stored dead letter")?;
            self.subscriber
                .apply(conn, self.source.name(), &envelope)
                .await?;
            diesel::sql_query(format!(
                "DELETE FROM {}.dead_letters WHERE id = $1",
                self.schema
            ))
            .bind::<BigInt, _>(id)
            .execute(conn)
            .await?;
            Ok(true)
        })
        .await
    }
}
