//! Events a subscriber ignores: passed by without its effects or `apply`, counted as
//! applied, and a step over nothing else commits without waiting for its WAL flush.

use std::sync::Mutex;

use super::*;

/// Four synthetic events from a source named `mixed`: only the third is one the
/// subscriber below takes a step for.
struct Mixed(Vec<eventlog::LoggedEvent>);

impl Mixed {
    fn new() -> Mixed {
        let types = ["test.skipped", "test.skipped", "test.taken", "test.skipped"];
        Mixed(
            types
                .iter()
                .zip(1..)
                .map(|(event_type, seq)| eventlog::LoggedEvent {
                    position: eventlog::Position { xid: 1, seq },
                    envelope: Envelope {
                        event_id: uuid::Uuid::now_v7(),
                        event_type: (*event_type).into(),
                        aggregate_id: uuid::Uuid::now_v7(),
                        aggregate_version: 1,
                        occurred_at: chrono::Utc::now(),
                        schema_version: 1,
                        actor: kernel::Actor::SYSTEM,
                        correlation_id: None,
                        payload: Envelope::raw_payload(&serde_json::json!({"seq": seq})),
                    },
                })
                .collect(),
        )
    }
}

#[async_trait]
impl eventlog::EventSource for Mixed {
    fn name(&self) -> &'static str {
        "mixed"
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
            .take(limit as usize)
            .cloned()
            .collect())
    }
    async fn backlog(&self, _: eventlog::Position) -> anyhow::Result<eventlog::Backlog> {
        Ok(eventlog::Backlog::default())
    }
}

/// Takes a step for `test.taken` only; records each call of its effects and `apply`.
#[derive(Default)]
struct Picky {
    calls: Mutex<Vec<String>>,
}

#[async_trait]
impl Subscriber for Picky {
    fn name(&self) -> &'static str {
        "picky"
    }
    fn ignores(&self, _: &str, event: &Envelope) -> bool {
        event.event_type != "test.taken"
    }
    async fn effects(&self, _: &str, event: &Envelope) -> anyhow::Result<()> {
        let call = format!(
            "effects {} {}",
            event.event_type,
            event.payload_json().unwrap()["seq"]
        );
        self.calls.lock().unwrap().push(call);
        Ok(())
    }
    async fn apply(
        &self,
        _: &mut AsyncPgConnection,
        _: &str,
        event: &Envelope,
    ) -> anyhow::Result<()> {
        let call = format!(
            "apply {} {}",
            event.event_type,
            event.payload_json().unwrap()["seq"]
        );
        self.calls.lock().unwrap().push(call);
        Ok(())
    }
}

/// The `synchronous_commit` of each transaction that moved a checkpoint, oldest first, as
/// a trigger on the checkpoints saw it.
async fn flushes(conn: &mut AsyncPgConnection) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        setting: String,
    }
    let rows: Vec<Setting> = diesel::sql_query("SELECT setting FROM ledger.moves ORDER BY n")
        .load(conn)
        .await
        .unwrap();
    rows.into_iter().map(|row| row.setting).collect()
}

/// A step over ignored events only calls nothing of the subscriber, moves the checkpoint
/// past them as applied, and commits unflushed; a step with one event it takes calls its
/// effects and `apply` for that one alone, and waits for its flush.
#[tokio::test]
async fn ignored_events_pass_by_and_a_step_of_only_those_skips_the_flush() {
    let f = fixture().await;
    let mut conn = write_conn(&f).await;
    conn.batch_execute(
        "CREATE TABLE ledger.moves (n serial PRIMARY KEY, setting text NOT NULL);
         CREATE FUNCTION ledger.note_move() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO ledger.moves (setting) VALUES (current_setting('synchronous_commit'));
             RETURN NEW;
         END $$;
         CREATE TRIGGER note_move AFTER UPDATE ON ledger.checkpoints
             FOR EACH ROW EXECUTE FUNCTION ledger.note_move();",
    )
    .await
    .unwrap();
    let picky = Arc::new(Picky::default());
    let subscription = Subscription {
        subscriber: picky.clone(),
        source: Arc::new(Mixed::new()),
        pool: f.pool.clone(),
        schema: "ledger",
    };
    subscription.register().await.unwrap();

    let applied = |applied| StepOutcome::Applied { applied, parked: 0 };
    assert_eq!(subscription.step(2).await.unwrap(), applied(2));
    assert_eq!(*picky.calls.lock().unwrap(), Vec::<String>::new());
    assert_eq!(flushes(&mut conn).await, ["off"]);

    assert_eq!(subscription.step(10).await.unwrap(), applied(2));
    assert_eq!(
        *picky.calls.lock().unwrap(),
        ["effects test.taken 3", "apply test.taken 3"]
    );
    assert_eq!(flushes(&mut conn).await, ["off", "on"]);

    assert_eq!(subscription.step(10).await.unwrap(), StepOutcome::Idle);
    assert_eq!(subscription.status().await.unwrap().applied, 4);
}
