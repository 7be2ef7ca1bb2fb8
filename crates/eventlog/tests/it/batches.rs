//! Batches: a failing batch falls back to one event at a time, and one subscriber never
//! runs two batches at once.

use super::*;

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
            actor: kernel::Actor::SYSTEM,
            correlation_id: None,
            payload: Envelope::raw_payload(&serde_json::json!({"n": 99})),
        };
        Ok(vec![eventlog::LoggedEvent { position, envelope }])
    }
    async fn backlog(&self, _: eventlog::Position) -> anyhow::Result<eventlog::Backlog> {
        Ok(eventlog::Backlog::default())
    }
}

/// Three synthetic events from a source named `fixed`; the second is poisoned.
pub(crate) struct ThreeEvents(Vec<eventlog::LoggedEvent>);

impl ThreeEvents {
    pub(crate) fn new() -> ThreeEvents {
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
                        actor: kernel::Actor::SYSTEM,
                        correlation_id: None,
                        payload: Envelope::raw_payload(
                            &serde_json::json!({"n": n, "poison": n == 2}),
                        ),
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

/// Records the `synchronous_commit` its step's transaction runs with.
struct Flushes {
    derived: bool,
    /// `synchronous_commit` and `plan_cache_mode`.
    seen: std::sync::Mutex<Option<(String, String)>>,
}

#[async_trait]
impl Subscriber for Flushes {
    fn name(&self) -> &'static str {
        if self.derived { "derived" } else { "durable" }
    }
    fn derived(&self) -> bool {
        self.derived
    }
    async fn apply(
        &self,
        conn: &mut AsyncPgConnection,
        _: &str,
        _: &Envelope,
    ) -> anyhow::Result<()> {
        let settings = (
            setting(conn, "synchronous_commit").await,
            setting(conn, "plan_cache_mode").await,
        );
        *self.seen.lock().unwrap() = Some(settings);
        Ok(())
    }
}

async fn setting(conn: &mut AsyncPgConnection, name: &str) -> String {
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }
    let setting: Setting = diesel::sql_query("SELECT current_setting($1) AS value")
        .bind::<diesel::sql_types::Text, _>(name)
        .get_result(conn)
        .await
        .unwrap();
    setting.value
}

/// A derived subscriber's step (a read model's) commits without waiting for its WAL
/// flush; any other's waits. Every step runs on generic plans. Both settings end with the
/// step's transaction.
#[tokio::test]
async fn only_a_derived_subscribers_steps_skip_the_flush() {
    let f = fixture().await;
    for (derived, expected) in [(true, "off"), (false, "on")] {
        let flushes = Arc::new(Flushes {
            derived,
            seen: std::sync::Mutex::new(None),
        });
        let subscription = Subscription {
            subscriber: flushes.clone(),
            source: Arc::new(OneEvent),
            pool: f.pool.clone(),
            schema: "ledger",
        };
        subscription.register().await.unwrap();
        assert_eq!(
            subscription.step(10).await.unwrap(),
            StepOutcome::Applied {
                applied: 1,
                parked: 0
            }
        );
        let seen = flushes.seen.lock().unwrap().clone().unwrap();
        assert_eq!(seen, (expected.to_owned(), "force_generic_plan".to_owned()));
    }
    // The pool's connections are back to the server's default.
    let mut conn = write_conn(&f).await;
    assert_eq!(setting(&mut conn, "synchronous_commit").await, "on");
    assert_eq!(setting(&mut conn, "plan_cache_mode").await, "auto");
}

/// A step from a remembered checkpoint that another process has since moved on reads
/// events already applied, finds the checkpoint elsewhere, and applies from there: nothing
/// twice, nothing skipped.
#[tokio::test]
async fn a_step_from_a_checkpoint_left_behind_applies_nothing_twice() {
    let f = fixture().await;
    let (here, there) = (f.subscription(), f.subscription());
    here.register().await.unwrap();
    let mut conn = write_conn(&f).await;
    for n in 1..=3 {
        f.append(&mut conn, n, false).await;
    }
    let known = steps_until(&here, None, 3).await;
    for n in 4..=5 {
        f.append(&mut conn, n, false).await;
    }
    steps_until(&there, None, 2).await;
    f.append(&mut conn, 6, false).await;
    // `known` is where `here` left the checkpoint, before `there` moved it: it reads 4
    // and 5 again, and applies 6 alone.
    let now = steps_until(&here, known, 1).await;
    assert!(now > known);
    assert_eq!(f.applied().await, [1, 2, 3, 4, 5, 6]);
    assert_eq!(
        here.step_after(now, 10).await.unwrap(),
        (StepOutcome::Idle, now)
    );
}

/// Steps `subscription` from `known` on until it has applied `count` events (each event
/// is below the watermark once every older transaction of the cluster has ended); where
/// the checkpoint then is.
async fn steps_until(
    subscription: &Subscription,
    mut known: Option<eventlog::Position>,
    count: usize,
) -> Option<eventlog::Position> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut total = 0;
    while total < count {
        assert!(Instant::now() < deadline, "applied {total} of {count}");
        let (outcome, position) = subscription.step_after(known, 10).await.unwrap();
        match outcome {
            StepOutcome::Applied { applied, parked: 0 } => total += applied,
            StepOutcome::Idle => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("{other:?}"),
        }
        known = position;
    }
    assert_eq!(total, count);
    known
}
