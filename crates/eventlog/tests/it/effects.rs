//! Effects: what a subscriber does outside its database runs before the step's
//! transaction, with no transaction of the subscription open, in log order; an event is
//! applied only once its effects succeeded, a failing effect is retried and parked like a
//! failing apply, and retrying the letter runs the effects again.

use std::sync::Mutex;

use super::*;

/// Records each event's effects (its `n`) and how many transactions of the test database
/// stood open while they ran; they fail for events whose payload says `"poison": true`
/// while `failing` is set. Applies like [`Recorder`], after checking that the event's
/// effects ran.
struct Effectful {
    url: String,
    failing: AtomicBool,
    effects: Mutex<Vec<(i64, i64)>>,
}

/// Transactions standing open between statements, but the asking one's.
const OPEN: &str = "SELECT count(*) AS n FROM pg_stat_activity \
     WHERE datname = current_database() AND pid <> pg_backend_pid() \
     AND state LIKE 'idle in transaction%'";

#[derive(diesel::QueryableByName)]
struct N {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[async_trait]
impl Subscriber for Effectful {
    fn name(&self) -> &'static str {
        "effectful"
    }

    async fn effects(&self, _: &str, event: &Envelope) -> anyhow::Result<()> {
        let mut conn = db::connect_admin(&self.url).await?;
        let open: N = diesel::sql_query(OPEN).get_result(&mut conn).await?;
        let n = event.payload_json().unwrap()["n"].as_i64().unwrap_or(-1);
        self.effects.lock().unwrap().push((n, open.n));
        if event.payload_json().unwrap()["poison"] == true
            && AtomicBool::load(&self.failing, Ordering::SeqCst)
        {
            anyhow::bail!("the effects of event {n} failed");
        }
        Ok(())
    }

    async fn apply(
        &self,
        conn: &mut AsyncPgConnection,
        source: &str,
        event: &Envelope,
    ) -> anyhow::Result<()> {
        let n = event.payload_json().unwrap()["n"].as_i64().unwrap_or(-1);
        let done = self
            .effects
            .lock()
            .unwrap()
            .iter()
            .any(|(seen, _)| *seen == n);
        anyhow::ensure!(done, "event {n} applied before its effects");
        diesel::sql_query(
            "INSERT INTO ledger.applied (source, event_id, position) VALUES ($1, $2, $3)",
        )
        .bind::<diesel::sql_types::Text, _>(source)
        .bind::<diesel::sql_types::Uuid, _>(event.event_id)
        .bind::<diesel::sql_types::BigInt, _>(n)
        .execute(conn)
        .await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_run_outside_the_transaction_and_gate_their_event() {
    let f = fixture().await;
    let subscriber = Arc::new(Effectful {
        url: f.db.url.clone(),
        failing: AtomicBool::new(true),
        effects: Mutex::new(Vec::new()),
    });
    let pool = db::pool(&f.db.url, &LEDGER, Default::default()).unwrap();
    let subscription = Subscription {
        subscriber: subscriber.clone(),
        source: Arc::new(PgEventSource {
            schema: "ledger",
            pool: pool.clone(),
        }),
        pool,
        schema: "ledger",
    };
    subscription.register().await.unwrap();
    {
        let mut conn = write_conn(&f).await;
        let events: Vec<NewEvent> = [(1, false), (2, true), (3, false)]
            .into_iter()
            .map(|(n, poison)| {
                let payload = serde_json::json!({"n": n, "poison": poison});
                test_event(1, payload)
            })
            .collect();
        // One transaction, as a command appends: the three become visible together (each
        // on its own, a transaction open elsewhere in the cluster could hold back the
        // watermark between them, and the first step would see event 1 alone).
        db::transaction(&mut conn, async |conn| {
            eventlog::append(conn, "ledger", &events).await
        })
        .await
        .unwrap();
    }

    let mut steps = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.applied().await.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "never got past event 2: {steps:?}"
        );
        match subscription.step(100).await.unwrap() {
            StepOutcome::Idle => tokio::time::sleep(Duration::from_millis(10)).await,
            outcome => steps.push(outcome),
        }
    }
    // Event 1 applied while event 2's effects fail (attempt 1); attempts 2 to 4; parked on
    // the last; event 3 follows.
    let mut expected = vec![StepOutcome::Applied {
        applied: 1,
        parked: 0,
    }];
    expected.extend((2..eventlog::MAX_ATTEMPTS).map(|attempts| StepOutcome::Failed { attempts }));
    expected.push(StepOutcome::Applied {
        applied: 0,
        parked: 1,
    });
    expected.push(StepOutcome::Applied {
        applied: 1,
        parked: 0,
    });
    assert_eq!(steps, expected);
    let tries = usize::try_from(eventlog::MAX_ATTEMPTS).unwrap();
    assert_eq!(f.applied().await, [1, 3]);
    let ran: Vec<i64> = subscriber
        .effects
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.0)
        .collect();
    let mut expected = vec![1];
    expected.extend(std::iter::repeat_n(2, tries));
    expected.push(3);
    assert_eq!(
        ran, expected,
        "effects in log order, none after a failing one, each attempt asking again"
    );

    subscriber.failing.store(false, Ordering::SeqCst);
    let parked = eventlog::dead_letters(&f.pool, "ledger").await.unwrap();
    assert!(
        parked[0].error.contains("the effects of event 2 failed"),
        "{parked:?}"
    );
    assert!(subscription.retry_dead_letter(parked[0].id).await.unwrap());
    assert_eq!(
        f.applied().await,
        [1, 3, 2],
        "the retry ran the effects, then applied"
    );

    let open: Vec<(i64, i64)> = subscriber.effects.lock().unwrap().clone();
    assert!(
        open.iter().all(|(_, open)| *open == 0),
        "effects ran while a transaction stood open: (event, open) {open:?}"
    );
}
