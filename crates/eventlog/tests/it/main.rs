//! The event log's guarantees, proven against a real Postgres with a recording subscriber:
//! no event skipped when transactions commit out of order, none applied twice by two
//! dispatchers, a failing event parked without blocking the rest.

mod ahead;
mod backlog;
mod batches;
mod connections;
mod dead_letters;
mod effects;
mod ignored;
mod publish;
mod tidy;
mod wake;

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
        if event.payload_json().unwrap()["poison"] == true
            && AtomicBool::load(&self.poisoned, Ordering::SeqCst)
        {
            anyhow::bail!("poisoned event {}", event.event_id);
        }
        diesel::sql_query(
            "INSERT INTO ledger.applied (source, event_id, position) VALUES ($1, $2, $3)",
        )
        .bind::<diesel::sql_types::Text, _>(source)
        .bind::<diesel::sql_types::Uuid, _>(event.event_id)
        .bind::<diesel::sql_types::BigInt, _>(
            event.payload_json().unwrap()["n"].as_i64().unwrap_or(-1),
        )
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
        let event = test_event(1, serde_json::json!({"n": n, "poison": poison}));
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
                    let event = test_event(1, serde_json::json!({"n": n}));
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

/// Events appended in one call (one statement) keep the order they were given in, with
/// the envelopes returned as written, actor and correlation id included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_appended_together_keep_their_order() {
    let f = fixture().await;
    let mut conn = write_conn(&f).await;
    let order: Vec<i64> = vec![5, 3, 9, 1, 7, 2, 8, 4, 6, 10];
    let events: Vec<NewEvent> = order
        .iter()
        .map(|n| test_event(*n, serde_json::json!({"n": n, "poison": false})))
        .collect();
    let written = db::transaction(&mut conn, async |conn| {
        eventlog::append(conn, "ledger", &events).await
    })
    .await
    .unwrap();
    assert_eq!(
        written
            .iter()
            .map(|e| e.aggregate_version)
            .collect::<Vec<_>>(),
        order
    );
    let subscription = f.subscription();
    subscription.register().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.applied().await.len() < order.len() && Instant::now() < deadline {
        subscription.step(3).await.unwrap();
    }
    assert_eq!(f.applied().await, order, "applied in the order appended");
    assert!(
        eventlog::append(&mut conn, "ledger", &[])
            .await
            .unwrap()
            .is_empty()
    );
}

/// A `test.happened` event at version `version` of a new aggregate, with `payload` (these
/// tests are about the log, not about any module's contract).
pub fn test_event(version: i64, payload: serde_json::Value) -> NewEvent {
    NewEvent {
        event_type: "test.happened",
        aggregate_id: uuid::Uuid::now_v7(),
        aggregate_version: version,
        schema_version: 1,
        payload,
    }
}
