//! Wake-ups: "there is something new to read on this channel", after the commit that wrote
//! it, within the process at once and to other processes by `NOTIFY`.
//!
//! A writer calls [`signal`] inside its transaction; once it commits
//! (`kernel::db::after_commit`), every [`Listener`] of the channel in this process wakes,
//! and each listener sends one `NOTIFY` on its own `LISTEN` connection, so that listeners
//! of other processes wake too. The `NOTIFY` is never part
//! of the writer's transaction: Postgres serializes every commit that notifies under one
//! cluster-wide lock held through the commit's WAL flush, so notifying commits cannot
//! flush together. Measured on the bench's data (1M orders), that lock was the most
//! common wait under placement load and cost a placement about 40 % of its rate
//! (BENCHMARKS.md). The notifier's own transaction commits with `synchronous_commit =
//! off`, so it holds the lock for no flush, and the wake-ups of 10 ms are folded into one
//! `NOTIFY`. A process skips its own `NOTIFY`s (their payload is its
//! origin).
//!
//! Wake-ups are hints: a lost one (a crash between a commit and its `NOTIFY`, a listener
//! reconnecting) costs a poll interval, never an event. Channels are process-wide: where
//! several apps share a process (tests), a commit of one wakes the others' listeners of
//! the same channel too, which costs them a look and nothing else.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use anyhow::Context;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One channel's wake-ups in this process.
struct Channel {
    /// Moves with every wake-up: this process's commits and other processes' `NOTIFY`s.
    any: watch::Sender<u64>,
    /// Moves with this process's commits only: what the notifiers pass on.
    local: watch::Sender<u64>,
}

static CHANNELS: LazyLock<Mutex<HashMap<&'static str, Arc<Channel>>>> =
    LazyLock::new(Mutex::default);

/// This process's `NOTIFY` payload, so that its listeners skip their own echo.
static ORIGIN: LazyLock<String> = LazyLock::new(|| uuid::Uuid::now_v7().simple().to_string());

fn channel(name: &'static str) -> Arc<Channel> {
    let mut channels = CHANNELS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Arc::clone(channels.entry(name).or_insert_with(|| {
        Arc::new(Channel {
            any: watch::channel(0).0,
            local: watch::channel(0).0,
        })
    }))
}

fn bump(counter: &watch::Sender<u64>) {
    counter.send_modify(|n| *n = n.wrapping_add(1));
}

/// Wakes the listeners of `channel`, here and in other processes, once the caller's
/// transaction commits (at once outside one).
pub fn signal(channel_name: &'static str) {
    kernel::db::after_commit(move || {
        let channel = channel(channel_name);
        bump(&channel.local);
        bump(&channel.any);
    });
}

/// The wake-ups of one channel: this process's commits, and other processes' `NOTIFY`s
/// (a `LISTEN` of its own, reconnected with backoff; every reconnection wakes too, since
/// notifications may have been missed meanwhile). On the same connection it passes this
/// process's commits on to the others. Dropping it stops its task.
pub struct Listener {
    moved: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Listens on `channel` of the database at `url`, and notifies it there.
    pub fn start(url: &str, channel_name: &'static str) -> Listener {
        let channel = channel(channel_name);
        let moved = channel.any.subscribe();
        let local = channel.local.subscribe();
        Listener {
            moved,
            task: tokio::spawn(listen_and_notify(
                url.to_owned(),
                channel_name,
                channel,
                local,
            )),
        }
    }

    /// A receiver that sees every later wake-up.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.moved.clone()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Raw: `pg_notify` has no DSL.
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// At most one `NOTIFY` per channel and process this often: the commits in between share
/// the next one. Sent after every commit, they were as many transactions as the commits
/// themselves under placement load (3123 for 3457 placements); the price is that another
/// process's subscribers wake up to this much later.
const NOTIFY_SPACING: Duration = Duration::from_millis(10);

/// One connection that `LISTEN`s on `channel` and turns other processes' notifications into
/// wake-ups, and sends a `NOTIFY` after this process's commits that signal it, at most one
/// per [`NOTIFY_SPACING`] (those that come meanwhile share the next); reconnects after
/// failures.
async fn listen_and_notify(
    url: String,
    name: &'static str,
    channel: Arc<Channel>,
    mut local: watch::Receiver<u64>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let result: anyhow::Result<()> = async {
            let mut conn = AsyncPgConnection::establish(&url)
                .await
                .context("listener connect")?;
            // Raw: `LISTEN` has no DSL. A lost `NOTIFY` costs a poll interval, a flush
            // would hold the cluster's notify lock: its commits do not wait for one.
            conn.batch_execute(&format!("SET synchronous_commit TO off; LISTEN {name}"))
                .await
                .context("LISTEN")?;
            let mut quiet_until = tokio::time::Instant::now();
            loop {
                // The stream only reads the connection's queue of notifications, which
                // keeps those that arrive while it is dropped.
                let committed = {
                    let mut notifications = std::pin::pin!(conn.notifications_stream());
                    tokio::select! {
                        notification = notifications.next() => {
                            let notification = notification
                                .context("listener connection closed")?
                                .context("listener")?;
                            if notification.payload != *ORIGIN {
                                bump(&channel.any);
                            }
                            false
                        }
                        changed = async {
                            tokio::time::sleep_until(quiet_until).await;
                            local.changed().await
                        } => changed.is_ok(),
                    }
                };
                if committed {
                    local.borrow_and_update();
                    kernel::db::prepared(
                        diesel::sql_query(NOTIFY)
                            .bind::<diesel::sql_types::Text, _>(name)
                            .bind::<diesel::sql_types::Text, _>(ORIGIN.as_str()),
                    )
                    .execute(&mut conn)
                    .await
                    .context("NOTIFY")?;
                    quiet_until = tokio::time::Instant::now() + NOTIFY_SPACING;
                }
                backoff = Duration::from_millis(100);
            }
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(
                channel = name,
                error = format!("{error:#}"),
                "listener lost its connection; polling until it is back"
            );
        }
        // Whatever was missed while disconnected, the subscriptions' polling finds.
        bump(&channel.any);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
