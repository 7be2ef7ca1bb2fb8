//! The event log's guarantees, proven against a real Postgres with a recording subscriber:
//! no event skipped when transactions commit out of order, none applied twice by two
//! dispatchers, a failing event parked without blocking the rest.

mod tidy;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use eventlog::{
    DispatchSettings, Dispatcher, PgEventSource, StepOutcome, Subscriber, Subscription,
};
use kernel::db::{self, Schema};
use kernel::testing::TestDatabase;
use kernel::{Envelope, NewEvent};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/it/migrations");
const LEDGER: Schema = Schema {
    name: "ledger",
    migrations: &[&eventlog::MIGRATIONS, &MIGRATIONS],
};

/// Records every event it applies; fails on events whose payload says `"poison": true`
/// while `poisoned` is set.
struct Recorder {
    poisoned: AtomicBool,
}

#[async_trait]
impl Subscriber for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    async fn apply(
        &self,
        conn: &mut AsyncPgConnection,
        source: &str,
        event: &Envelope,
    ) -> anyhow::Result<()> {
        if event.payload["poison"] == true && AtomicBool::load(&self.poisoned, Ordering::SeqCst) {
            anyhow::bail!("poisoned event {}", event.event_id);
        }
        diesel::sql_query(
            "INSERT INTO ledger.applied (source, event_id, position) VALUES ($1, $2, $3)",
        )
        .bind::<diesel::sql_types::Text, _>(source)
        .bind::<diesel::sql_types::Uuid, _>(event.event_id)
        .bind::<diesel::sql_types::BigInt, _>(event.payload["n"].as_i64().unwrap_or(-1))
        .execute(conn)
        .await?;
        Ok(())
    }
}

struct Fixture {
    db: TestDatabase,
    pool: db::Pool,
    recorder: Arc<Recorder>,
}

async fn fixture() -> Fixture {
    let db = kernel::testing::database(&[LEDGER]).await;
    let pool = db::pool(&db.url, &LEDGER, Default::default()).unwrap();
    Fixture {
        db,
        pool,
        recorder: Arc::new(Recorder {
            poisoned: AtomicBool::new(false),
        }),
    }
}

impl Fixture {
    /// A subscription of the recorder to the ledger's own log, on its own pool (as a
    /// separate process would have).
    fn subscription(&self) -> Subscription {
        let pool = db::pool(&self.db.url, &LEDGER, Default::default()).unwrap();
        Subscription {
            subscriber: self.recorder.clone(),
            source: Arc::new(PgEventSource {
                schema: "ledger",
                pool: pool.clone(),
            }),
            pool,
            schema: "ledger",
        }
    }

    async fn append(&self, conn: &mut AsyncPgConnection, n: i64, poison: bool) {
        let event = NewEvent::new(
            "test.happened",
            uuid::Uuid::now_v7(),
            1,
            &serde_json::json!({"n": n, "poison": poison}),
        );
        eventlog::append(conn, "ledger", &[event]).await.unwrap();
    }

    async fn applied(&self) -> Vec<i64> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            position: i64,
        }
        let rows: Vec<Row> = diesel::sql_query("SELECT position FROM ledger.applied ORDER BY ctid")
            .load(&mut self.db.connect().await)
            .await
            .unwrap();
        rows.into_iter().map(|r| r.position).collect()
    }

    async fn wait_for_applied(&self, count: usize) -> Vec<i64> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let applied = self.applied().await;
            if applied.len() >= count || Instant::now() > deadline {
                return applied;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn write_conn(fixture: &Fixture) -> db::Connection {
    db::connect(&fixture.pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_commits_late_is_not_skipped() {
    let f = fixture().await;
    let subscription = f.subscription();
    subscription.register().await.unwrap();

    // A takes the lower position but commits last.
    let mut a = write_conn(&f).await;
    a.batch_execute("BEGIN").await.unwrap();
    f.append(&mut a, 1, false).await;
    let mut b = write_conn(&f).await;
    b.batch_execute("BEGIN").await.unwrap();
    f.append(&mut b, 2, false).await;
    b.batch_execute("COMMIT").await.unwrap();

    // B is committed, but reading it now would move the checkpoint past A.
    assert_eq!(
        subscription.step(100).await.unwrap(),
        StepOutcome::Idle,
        "nothing is read past a running writer"
    );
    a.batch_execute("COMMIT").await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    while f.applied().await.len() < 2 && Instant::now() < deadline {
        subscription.step(100).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(f.applied().await, [1, 2], "both applied, in log order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_apply_each_event_once() {
    let f = fixture().await;
    let settings = DispatchSettings {
        poll_interval: Duration::from_millis(20),
        batch_size: 7,
    };
    let first = Dispatcher::start(&f.db.url, vec![f.subscription()], settings)
        .await
        .unwrap();
    let second = Dispatcher::start(&f.db.url, vec![f.subscription()], settings)
        .await
        .unwrap();

    let writers: Vec<_> = (0..6)
        .map(|w| {
            let pool = f.pool.clone();
            tokio::spawn(async move {
                let mut conn = db::connect(&pool).await.unwrap();
                for i in 0..50 {
                    let n = w * 1000 + i;
                    let event = NewEvent::new(
                        "test.happened",
                        uuid::Uuid::now_v7(),
                        1,
                        &serde_json::json!({"n": n}),
                    );
                    eventlog::append(&mut conn, "ledger", &[event])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let applied = f.wait_for_applied(300).await;
    drop((first, second));
    assert_eq!(applied.len(), 300, "every event applied");
    let mut distinct = applied.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 300, "no event applied twice");
    let checkpoint =
        f.db.scalar("SELECT applied AS n FROM ledger.checkpoints WHERE subscriber = 'recorder'")
            .await;
    assert_eq!(checkpoint, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_event_is_retried_then_parked_and_can_be_retried_later() {
    let f = fixture().await;
    f.recorder.poisoned.store(true, Ordering::SeqCst);
    let subscription = f.subscription();
    subscription.register().await.unwrap();
    let mut conn = write_conn(&f).await;
    f.append(&mut conn, 1, false).await;
    f.append(&mut conn, 2, true).await;
    f.append(&mut conn, 3, false).await;

    let mut steps = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.applied().await.len() < 2 && Instant::now() < deadline {
        steps.push(subscription.step(100).await.unwrap());
    }
    // Event 1 goes through; event 2 fails MAX_ATTEMPTS times in a row (attempt 1 may fall
    // in the first batch, depending on when event 2 passes the watermark), is parked on the
    // last attempt, and event 3 follows.
    let idle = |s: &&StepOutcome| **s != StepOutcome::Idle;
    let steps: Vec<StepOutcome> = steps.iter().filter(idle).copied().collect();
    assert_eq!(
        steps[0],
        StepOutcome::Applied {
            applied: 1,
            parked: 0
        },
        "{steps:?}"
    );
    let failed: Vec<i32> = steps
        .iter()
        .filter_map(|s| {
            if let StepOutcome::Failed { attempts } = s {
                Some(*attempts)
            } else {
                None
            }
        })
        .collect();
    let first = failed[0];
    assert!(first == 1 || first == 2, "{steps:?}");
    assert_eq!(
        failed,
        (first..eventlog::MAX_ATTEMPTS).collect::<Vec<_>>(),
        "consecutive retries: {steps:?}"
    );
    assert_eq!(
        steps[1 + failed.len()],
        StepOutcome::Applied {
            applied: 0,
            parked: 1
        },
        "parked on the last attempt: {steps:?}"
    );
    assert_eq!(f.applied().await, [1, 3], "the rest is not blocked");

    let parked = eventlog::dead_letters(&f.pool, "ledger").await.unwrap();
    assert_eq!(parked.len(), 1);
    assert!(
        parked[0].error.contains("poisoned event"),
        "{}",
        parked[0].error
    );

    f.recorder.poisoned.store(false, Ordering::SeqCst);
    assert!(subscription.retry_dead_letter(parked[0].id).await.unwrap());
    assert_eq!(f.applied().await, [1, 3, 2]);
    assert!(
        eventlog::dead_letters(&f.pool, "ledger")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !subscription.retry_dead_letter(parked[0].id).await.unwrap(),
        "a retried letter is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_roll_back_with_their_transaction() {
    let f = fixture().await;
    let mut conn = write_conn(&f).await;
    let result: Result<(), anyhow::Error> = db::transaction(&mut conn, async |conn| {
        f.append(conn, 1, false).await;
        anyhow::bail!("the state change failed")
    })
    .await;
    assert!(result.is_err());
    f.append(&mut conn, 2, false).await;
    let subscription = f.subscription();
    subscription.register().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.applied().await.is_empty() && Instant::now() < deadline {
        subscription.step(100).await.unwrap();
    }
    assert_eq!(
        f.applied().await,
        [2],
        "the rolled-back event never existed"
    );
}

/// One synthetic event from a source named `other`.
struct OneEvent;

#[async_trait]
impl eventlog::EventSource for OneEvent {
    fn name(&self) -> &'static str {
        "other"
    }
    async fn read(
        &self,
        after: eventlog::Position,
        _: i64,
    ) -> anyhow::Result<Vec<eventlog::LoggedEvent>> {
        let position = eventlog::Position { xid: 1, seq: 1 };
        if after >= position {
            return Ok(Vec::new());
        }
        let envelope = Envelope {
            event_id: uuid::Uuid::now_v7(),
            event_type: "test.other".into(),
            aggregate_id: uuid::Uuid::now_v7(),
            aggregate_version: 1,
            occurred_at: chrono::Utc::now(),
            schema_version: 1,
            payload: serde_json::json!({"n": 99}),
        };
        Ok(vec![eventlog::LoggedEvent { position, envelope }])
    }
    async fn backlog(&self, _: eventlog::Position) -> anyhow::Result<eventlog::Backlog> {
        Ok(eventlog::Backlog::default())
    }
}

/// Three synthetic events from a source named `fixed`; the second is poisoned.
struct ThreeEvents(Vec<eventlog::LoggedEvent>);

impl ThreeEvents {
    fn new() -> ThreeEvents {
        ThreeEvents(
            (1..=3)
                .map(|n| eventlog::LoggedEvent {
                    position: eventlog::Position { xid: 1, seq: n },
                    envelope: Envelope {
                        event_id: uuid::Uuid::now_v7(),
                        event_type: "test.happened".into(),
                        aggregate_id: uuid::Uuid::now_v7(),
                        aggregate_version: 1,
                        occurred_at: chrono::Utc::now(),
                        schema_version: 1,
                        payload: serde_json::json!({"n": n, "poison": n == 2}),
                    },
                })
                .collect(),
        )
    }
}

#[async_trait]
impl eventlog::EventSource for ThreeEvents {
    fn name(&self) -> &'static str {
        "fixed"
    }
    async fn read(
        &self,
        after: eventlog::Position,
        limit: i64,
    ) -> anyhow::Result<Vec<eventlog::LoggedEvent>> {
        Ok(self
            .0
            .iter()
            .filter(|e| e.position > after)
            .take(usize::try_from(limit).unwrap_or(0))
            .cloned()
            .collect())
    }
    async fn backlog(&self, _: eventlog::Position) -> anyhow::Result<eventlog::Backlog> {
        Ok(eventlog::Backlog::default())
    }
}

/// The [`Recorder`], also applying batches (one event after the other, so a poisoned event
/// fails the batch after the events before it were written).
struct BatchRecorder {
    recorder: Recorder,
    batches: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Subscriber for BatchRecorder {
    fn name(&self) -> &'static str {
        "batch_recorder"
    }

    async fn apply(
        &self,
        conn: &mut AsyncPgConnection,
        source: &str,
        event: &Envelope,
    ) -> anyhow::Result<()> {
        self.recorder.apply(conn, source, event).await
    }

    async fn apply_batch(
        &self,
        conn: &mut AsyncPgConnection,
        source: &str,
        events: &[&Envelope],
    ) -> anyhow::Result<bool> {
        for event in events {
            self.recorder.apply(conn, source, event).await?;
        }
        self.batches.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }
}

/// A batch applies its events at once; a batch that fails is rolled back and its events
/// are applied one by one, so the failing one is retried on its own and none is applied
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_falls_back_to_one_event_at_a_time() {
    let f = fixture().await;
    let subscriber = Arc::new(BatchRecorder {
        recorder: Recorder {
            poisoned: AtomicBool::new(true),
        },
        batches: Default::default(),
    });
    let subscription = Subscription {
        subscriber: subscriber.clone(),
        source: Arc::new(ThreeEvents::new()),
        pool: f.pool.clone(),
        schema: "ledger",
    };
    subscription.register().await.unwrap();

    let first = subscription.step(10).await.unwrap();
    assert_eq!(
        first,
        StepOutcome::Applied {
            applied: 1,
            parked: 0
        },
        "event 1, then 2 fails"
    );
    assert_eq!(
        std::sync::atomic::AtomicUsize::load(&subscriber.batches, Ordering::SeqCst),
        0
    );
    assert_eq!(
        f.applied().await,
        [1],
        "the failed batch left nothing behind"
    );

    subscriber.recorder.poisoned.store(false, Ordering::SeqCst);
    let second = subscription.step(10).await.unwrap();
    assert_eq!(
        second,
        StepOutcome::Applied {
            applied: 2,
            parked: 0
        }
    );
    assert_eq!(
        std::sync::atomic::AtomicUsize::load(&subscriber.batches, Ordering::SeqCst),
        1,
        "2 and 3 as one batch"
    );
    assert_eq!(f.applied().await, [1, 2, 3]);
    assert_eq!(subscription.step(10).await.unwrap(), StepOutcome::Idle);
}

/// Holds every `apply` until released.
struct Gate {
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

#[async_trait]
impl Subscriber for Gate {
    fn name(&self) -> &'static str {
        "gate"
    }
    async fn apply(&self, _: &mut AsyncPgConnection, _: &str, _: &Envelope) -> anyhow::Result<()> {
        self.entered.notify_one();
        self.release.notified().await;
        Ok(())
    }
}

/// A subscriber's sources feed the same tables, so two of its batches must never run at
/// once (each would miss the other's uncommitted writes): while one source's batch runs,
/// another source's step is `Busy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_subscriber_never_runs_two_batches_at_once() {
    let f = fixture().await;
    let gate = Arc::new(Gate {
        entered: tokio::sync::Notify::new(),
        release: tokio::sync::Notify::new(),
    });
    let mut conn = write_conn(&f).await;
    f.append(&mut conn, 1, false).await;
    let ledger = Subscription {
        subscriber: gate.clone(),
        source: Arc::new(PgEventSource {
            schema: "ledger",
            pool: f.pool.clone(),
        }),
        pool: f.pool.clone(),
        schema: "ledger",
    };
    let other = Subscription {
        source: Arc::new(OneEvent),
        ..ledger.clone()
    };
    ledger.register().await.unwrap();
    other.register().await.unwrap();
    // The event is readable once the cluster-wide watermark passes it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while ledger
        .source
        .read(eventlog::Position::default(), 10)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the appended event never became readable"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let first = tokio::spawn({
        let ledger = ledger.clone();
        async move { ledger.step(10).await.unwrap() }
    });
    gate.entered.notified().await;
    let concurrent = tokio::time::timeout(Duration::from_secs(5), other.step(10)).await;
    let concurrent =
        concurrent.expect("the other source's batch ran concurrently and entered the gate");
    assert_eq!(
        concurrent.unwrap(),
        StepOutcome::Busy,
        "the other source waits for the running batch"
    );
    gate.release.notify_one();
    assert_eq!(
        first.await.unwrap(),
        StepOutcome::Applied {
            applied: 1,
            parked: 0
        }
    );
    let second = tokio::spawn(async move { other.step(10).await.unwrap() });
    gate.entered.notified().await;
    gate.release.notify_one();
    assert_eq!(
        second.await.unwrap(),
        StepOutcome::Applied {
            applied: 1,
            parked: 0
        }
    );
}

/// An append on a connection the server has ended fails as "unavailable" (a `503`), though
/// its error only went through `anyhow::Context`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_on_a_lost_connection_is_unavailable() {
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    let f = fixture().await;
    let mut conn = write_conn(&f).await;
    let Pid { pid } = diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result(&mut *conn)
        .await
        .unwrap();
    let mut admin = f.db.connect().await;
    diesel::sql_query("SELECT pg_terminate_backend($1)")
        .bind::<diesel::sql_types::Integer, _>(pid)
        .execute(&mut admin)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let query = format!("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = {pid}");
    while f.db.scalar(&query).await > 0 {
        assert!(Instant::now() < deadline, "backend {pid} still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let event = NewEvent::new(
        "test.happened",
        uuid::Uuid::now_v7(),
        1,
        &serde_json::json!({}),
    );
    let error = eventlog::append(&mut conn, "ledger", &[event])
        .await
        .expect_err("the connection is gone");
    let problem = kernel::Problem::from_unexpected(&error);
    assert_eq!(
        (problem.status, problem.retry_after),
        (503, Some(1)),
        "{error:#}"
    );
}

/// A subscription whose source is its own pool's log, as the order saga's is, on a pool of
/// one connection: a step must never hold a connection while it waits for another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_reading_its_own_pool_progresses_with_one_connection() {
    let f = fixture().await;
    let settings = db::PoolSettings {
        max_size: 1,
        wait_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let pool = db::pool(&f.db.url, &LEDGER, settings).unwrap();
    let subscription = Subscription {
        subscriber: f.recorder.clone(),
        source: Arc::new(PgEventSource {
            schema: "ledger",
            pool: pool.clone(),
        }),
        pool: pool.clone(),
        schema: "ledger",
    };
    subscription.register().await.unwrap();
    {
        let mut conn = db::connect(&pool).await.unwrap();
        f.append(&mut conn, 1, false).await;
        f.append(&mut conn, 2, false).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.applied().await.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "never applied: {:?}",
            f.applied().await
        );
        let step = subscription.step(100).await;
        assert!(step.is_ok(), "a step on a pool of one failed: {step:?}");
    }
    assert_eq!(f.applied().await, [1, 2]);
    assert_eq!(subscription.step(100).await.unwrap(), StepOutcome::Idle);
}

/// Panics on events whose payload says `"poison": true`.
struct Panicker;

#[async_trait]
impl Subscriber for Panicker {
    fn name(&self) -> &'static str {
        "panicker"
    }
    async fn apply(
        &self,
        _: &mut AsyncPgConnection,
        _: &str,
        event: &Envelope,
    ) -> anyhow::Result<()> {
        assert!(
            event.payload["poison"] != true,
            "poisoned event {}",
            event.event_id
        );
        Ok(())
    }
}

/// A parked event whose subscriber still panics: retrying it answers an error (and keeps
/// the letter), as delivery does, instead of unwinding into the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_dead_letter_of_a_panicking_subscriber_is_an_error() {
    let f = fixture().await;
    let subscription = Subscription {
        subscriber: Arc::new(Panicker),
        source: Arc::new(ThreeEvents::new()),
        pool: f.pool.clone(),
        schema: "ledger",
    };
    subscription.register().await.unwrap();
    for _ in 0..=eventlog::MAX_ATTEMPTS {
        subscription.step(10).await.unwrap();
    }
    let parked = eventlog::dead_letters(&f.pool, "ledger").await.unwrap();
    assert_eq!(
        parked.len(),
        1,
        "the panicking event was parked: {parked:?}"
    );
    assert!(parked[0].error.contains("panicked"), "{}", parked[0].error);

    let retried = tokio::spawn({
        let subscription = subscription.clone();
        async move { subscription.retry_dead_letter(parked[0].id).await }
    })
    .await
    .expect("retry_dead_letter unwound instead of answering");
    let error = retried.expect_err("the subscriber still panics");
    assert!(format!("{error:#}").contains("panicked"), "{error:#}");
    assert_eq!(
        eventlog::dead_letters(&f.pool, "ledger")
            .await
            .unwrap()
            .len(),
        1,
        "a failed retry keeps the letter"
    );
}

/// Retrying a dead letter applies it like a batch would, so it waits for the subscriber's
/// lock: never beside a running batch of the same subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_dead_letter_waits_for_the_subscriber_lock() {
    let f = fixture().await;
    f.recorder.poisoned.store(true, Ordering::SeqCst);
    let subscription = Subscription {
        subscriber: f.recorder.clone(),
        source: Arc::new(ThreeEvents::new()),
        pool: f.pool.clone(),
        schema: "ledger",
    };
    subscription.register().await.unwrap();
    for _ in 0..=eventlog::MAX_ATTEMPTS {
        subscription.step(10).await.unwrap();
    }
    let parked = eventlog::dead_letters(&f.pool, "ledger").await.unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    f.recorder.poisoned.store(false, Ordering::SeqCst);

    // A batch of the recorder is running (its lock is held).
    let mut holder = write_conn(&f).await;
    holder.batch_execute("BEGIN").await.unwrap();
    eventlog::lock_subscriber(&mut holder, "ledger", "recorder")
        .await
        .unwrap();
    let retry = tokio::spawn({
        let subscription = subscription.clone();
        async move { subscription.retry_dead_letter(parked[0].id).await }
    });
    let waiting = "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.db.scalar(waiting).await == 0 {
        assert!(
            !retry.is_finished(),
            "the retry ran beside a batch of its subscriber"
        );
        assert!(Instant::now() < deadline, "the retry never waited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        f.applied().await,
        [1, 3],
        "nothing retried while the lock is held"
    );
    holder.batch_execute("COMMIT").await.unwrap();
    assert!(retry.await.unwrap().unwrap());
    assert_eq!(f.applied().await, [1, 3, 2]);
}
