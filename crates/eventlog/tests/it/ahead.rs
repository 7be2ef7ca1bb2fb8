//! Reading ahead (`Subscription::step_ahead`, the rebuild's replay): the batch read while
//! the one before is applied is applied next, and only from where it was read.

use super::*;

use eventlog::ReadAhead;

/// Steps `subscription` with reads ahead until it has applied `count` events (each is
/// below the watermark once every older transaction of the cluster has ended); where
/// the checkpoint then is, and the last read ahead.
async fn steps_ahead_until(
    subscription: &Subscription,
    mut known: Option<eventlog::Position>,
    mut ahead: Option<ReadAhead>,
    limit: i64,
    count: usize,
) -> (Option<eventlog::Position>, Option<ReadAhead>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut total = 0;
    while total < count {
        assert!(Instant::now() < deadline, "applied {total} of {count}");
        let (outcome, position, next) = subscription
            .step_ahead(known, limit, ahead.take())
            .await
            .unwrap();
        match outcome {
            StepOutcome::Applied { applied, parked: 0 } => total += applied,
            StepOutcome::Idle => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("{other:?}"),
        }
        (known, ahead) = (position, next);
    }
    assert_eq!(total, count);
    (known, ahead)
}

/// Steps `subscription` until the ledger holds `count` events.
async fn applied_through(f: &Fixture, subscription: &Subscription, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.applied().await.len() < count {
        assert!(Instant::now() < deadline, "{:?}", f.applied().await);
        subscription.step(10).await.unwrap();
    }
}

/// Batches of two over five events, each step handing the next its read ahead: every
/// event once, in order, and an event appended after a read ahead is applied by a later
/// step.
#[tokio::test]
async fn a_replay_read_ahead_applies_every_event_once_in_order() {
    let f = fixture().await;
    let subscription = f.subscription();
    subscription.register().await.unwrap();
    let mut conn = write_conn(&f).await;
    for n in 1..=5 {
        f.append(&mut conn, n, false).await;
    }
    let (known, ahead) = steps_ahead_until(&subscription, None, None, 2, 5).await;
    f.append(&mut conn, 6, false).await;
    steps_ahead_until(&subscription, known, ahead, 2, 1).await;
    assert_eq!(f.applied().await, [1, 2, 3, 4, 5, 6]);
}

/// `here` applies 1 and 2 and reads 3 ahead; then `there` applies 3 and 4, and 5 is
/// appended. Answers where `here` left the checkpoint and its read ahead.
async fn overtaken(f: &Fixture) -> (Option<eventlog::Position>, Option<ReadAhead>) {
    let (here, there) = (f.subscription(), f.subscription());
    here.register().await.unwrap();
    let mut conn = write_conn(f).await;
    for n in 1..=3 {
        f.append(&mut conn, n, false).await;
    }
    let (known, ahead) = steps_ahead_until(&here, None, None, 2, 2).await;
    assert_eq!(
        ahead.as_ref().map(ReadAhead::len),
        Some(1),
        "3 was read ahead"
    );
    applied_through(f, &there, 3).await;
    f.append(&mut conn, 4, false).await;
    applied_through(f, &there, 4).await;
    f.append(&mut conn, 5, false).await;
    (known, ahead)
}

/// From where it left the checkpoint, `here` finds it moved on and reads again: 5 alone.
#[tokio::test]
async fn a_read_ahead_another_step_overtook_is_not_applied_again() {
    let f = fixture().await;
    let (known, ahead) = overtaken(&f).await;
    steps_ahead_until(&f.subscription(), known, ahead, 2, 1).await;
    assert_eq!(f.applied().await, [1, 2, 3, 4, 5]);
}

/// From a fresh look at the checkpoint, a read ahead from elsewhere is not used: 5 alone.
#[tokio::test]
async fn a_read_ahead_from_another_position_is_not_used() {
    let f = fixture().await;
    let (_, ahead) = overtaken(&f).await;
    steps_ahead_until(&f.subscription(), None, ahead, 2, 1).await;
    assert_eq!(f.applied().await, [1, 2, 3, 4, 5]);
}
