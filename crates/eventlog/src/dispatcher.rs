//! The tasks that keep delivering: one task per subscriber cycles through its sources,
//! woken by the event logs' commits (`wake.rs`), polling as a fallback and backing off
//! after failures (the loops log and never die).

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{CHANNEL, Listener, Position, StepOutcome, Subscription};

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

/// Running delivery: the event logs' wake-ups and one task per subscriber. Dropping it
/// stops them.
pub struct Dispatcher {
    tasks: Vec<JoinHandle<()>>,
    wake: Listener,
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
        let wake = Listener::start(listen_url, CHANNEL);
        let mut tasks = Vec::new();
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
            tasks.push(tokio::spawn(deliver(group, wake.subscribe(), settings)));
        }
        Ok(Dispatcher { tasks, wake })
    }

    /// The wake-ups of the event logs' channel, for other tasks that read the logs (the
    /// publishers).
    pub fn wake(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
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

/// Delivers one subscriber's subscriptions forever: steps each source in turn while there
/// is work, waits for a wake-up or the poll interval when all are idle, backs off after
/// failures.
///
/// What a wake-up costs is kept to what it needs: each source's checkpoint is remembered
/// from its last step (`Subscription::step_after`) rather than read again, and only a
/// source whose batch was full is stepped again at once; one found idle, or whose batch
/// took all there was, waits for the next wake-up (any log's: they do not say which) or
/// the poll. After a quiet poll interval every checkpoint is read afresh.
async fn deliver(
    subscriptions: Vec<Subscription>,
    mut wake: watch::Receiver<u64>,
    settings: DispatchSettings,
) {
    let mut failures = 0u32;
    let mut known: Vec<Option<Position>> = vec![None; subscriptions.len()];
    let mut due = vec![true; subscriptions.len()];
    loop {
        if wake.has_changed().unwrap_or(true) {
            due.fill(true);
        }
        wake.borrow_and_update();
        let (mut progress, mut busy, mut pause) = (false, false, None);
        for (index, subscription) in subscriptions.iter().enumerate() {
            if !due[index] {
                continue;
            }
            let outcome = subscription
                .step_after(known[index], settings.batch_size)
                .await;
            known[index] = outcome.as_ref().ok().and_then(|(_, position)| *position);
            match outcome.map(|(outcome, _)| outcome) {
                Ok(StepOutcome::Applied { applied, parked }) => {
                    progress = true;
                    // A batch short of the limit took all there was when it read; what
                    // commits later wakes it.
                    if ((applied + parked) as i64) < settings.batch_size {
                        due[index] = false;
                    }
                }
                Ok(StepOutcome::Idle) => due[index] = false,
                Ok(StepOutcome::Busy) => busy = true,
                Ok(StepOutcome::Failed { attempts }) => {
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
            due.fill(true);
        } else if progress {
            failures = 0;
        } else if busy {
            // Another process holds this subscriber; it may let go any moment.
            let _ = tokio::time::timeout(
                settings.poll_interval.min(Duration::from_millis(50)),
                wake.changed(),
            )
            .await;
            due.fill(true);
        } else {
            failures = 0;
            let woken = tokio::time::timeout(settings.poll_interval, wake.changed()).await;
            if woken.is_err() {
                known.fill(None);
            }
            due.fill(true);
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}
