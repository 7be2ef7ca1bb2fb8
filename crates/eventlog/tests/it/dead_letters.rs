//! Dead letters: retrying one goes through the subscriber's lock and panic catching.

use super::*;
use crate::batches::ThreeEvents;

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
            event.payload_json().unwrap()["poison"] != true,
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
