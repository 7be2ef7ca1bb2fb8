//! Externalization: every event of a module's log published to NATS JetStream, in log
//! order, at least once, the checkpoint moved only after the acknowledgement.
//!
//! A publisher is a subscriber of one log with a checkpoint of its own (subscriber
//! [`PUBLISHER`], in the log's own schema), but not a [`crate::Subscription`]: it never
//! parks an event (a stream that is down is waited for, however long), and one instance
//! publishes a log at a time. That instance is the leader: it holds a session advisory
//! lock on a connection of its own and does everything on that connection (read the
//! checkpoint, read the events, move the checkpoint), so if it loses the lock it loses the
//! connection and cannot move the checkpoint any more. The others stand by and try to take
//! over every [`PublishSettings::standby_interval`].
//!
//! Exactly once in the stream: each message carries `Nats-Msg-Id` = the event id, and
//! JetStream drops a repeat within its duplicate window; a batch whose outcome is unknown
//! (a timeout, a lost connection) is sent again at once, well inside it. A leader that
//! starts, or resumes after a failure, first asks the stream for the last event of its
//! log and skips what the stream already holds, so a crash between the acknowledgement
//! and the checkpoint leaves no duplicate however long nobody publishes. Messages from one
//! connection are stored in the order sent, so what the stream holds of a batch is a
//! prefix of it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::db::{Connection, Pool, connect};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::checkpoints::{self, Advance};
use crate::jetstream::{JetStream, PublishSettings};
use crate::subscription::status_of;
use crate::{PgEventSource, SubscriptionStatus, read};

/// The publisher's name: its checkpoints' subscriber.
pub const PUBLISHER: &str = "nats_publisher";

/// Raw: advisory locks are functions. The key of a log's leadership.
const LEAD: &str =
    "SELECT pg_try_advisory_lock(hashtextextended('emporium.publisher.' || $1, 0)) AS locked";

/// One module's log as the publisher needs it.
#[derive(Clone)]
pub struct PublishedLog {
    /// The log's schema: the module, in the subjects.
    pub schema: &'static str,
    /// A pool of the module's role for the checkpoint's registration and status.
    pub pool: Pool,
    /// A pool of the module's role, of one connection: the leader's.
    pub leader: Pool,
}

impl PublishedLog {
    /// Where the publisher of this log stands (the same in every instance).
    pub async fn status(&self) -> anyhow::Result<SubscriptionStatus> {
        let source = PgEventSource {
            schema: self.schema,
            pool: self.pool.clone(),
        };
        status_of(&self.pool, self.schema, (PUBLISHER, self.schema), &source).await
    }

    async fn register(&self) -> anyhow::Result<()> {
        let mut conn = connect(&self.pool).await?;
        checkpoints::register(&mut conn, self.schema, (PUBLISHER, self.schema)).await
    }
}

/// The running publishers of a process, one task per log. Dropping it stops them.
pub struct Publishers {
    tasks: Vec<JoinHandle<()>>,
}

impl Publishers {
    /// Registers each log's checkpoint and starts its publisher. NATS need not be up:
    /// the publishers wait for it.
    pub async fn start(
        logs: Vec<PublishedLog>,
        settings: PublishSettings,
        wake: watch::Receiver<u64>,
    ) -> anyhow::Result<Publishers> {
        for log in &logs {
            log.register().await?;
        }
        let jetstream = JetStream::connect(&settings).await?;
        let settings = Arc::new(settings);
        let tasks = logs
            .into_iter()
            .map(|log| {
                tokio::spawn(run(
                    log,
                    jetstream.clone(),
                    Arc::clone(&settings),
                    wake.clone(),
                ))
            })
            .collect();
        Ok(Publishers { tasks })
    }
}

impl Drop for Publishers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Publishes `log` forever: stands by until it leads, then leads until it fails.
async fn run(
    log: PublishedLog,
    jetstream: JetStream,
    settings: Arc<PublishSettings>,
    mut wake: watch::Receiver<u64>,
) {
    let mut failures = 0u32;
    loop {
        match lead(&log, &jetstream, &settings, &mut wake).await {
            Ok(()) => {
                failures = 0;
                tokio::time::sleep(settings.standby_interval).await;
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(
                    log = log.schema,
                    error = format!("{error:#}"),
                    "publisher lost its database connection; retrying"
                );
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }
}

/// The leader's connection: taken out of its pool for good when dropped, so the session
/// lock it holds ends with it.
struct Leadership(Option<Connection>);

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            kernel::db::detach(conn);
        }
    }
}

impl Leadership {
    fn conn(&mut self) -> &mut AsyncPgConnection {
        self.0.as_mut().expect("held until dropped")
    }
}

/// Takes the lead of `log` if nobody has it and publishes until a database error
/// (`Err`); `Ok` if another instance leads.
async fn lead(
    log: &PublishedLog,
    jetstream: &JetStream,
    settings: &PublishSettings,
    wake: &mut watch::Receiver<u64>,
) -> anyhow::Result<()> {
    #[derive(diesel::QueryableByName)]
    struct Locked {
        #[diesel(sql_type = Bool)]
        locked: bool,
    }
    let mut conn = connect(&log.leader).await?;
    let locked: Locked = diesel::sql_query(LEAD)
        .bind::<Text, _>(log.schema)
        .get_result(&mut *conn)
        .await
        .context("taking the publisher's lead")?;
    if !locked.locked {
        return Ok(());
    }
    let mut leadership = Leadership(Some(conn));
    tracing::info!(log = log.schema, "publishing to NATS JetStream");
    let key = (PUBLISHER, log.schema);
    // Whether the stream may hold events after the checkpoint: at the start, and after a
    // batch whose outcome is unknown.
    let mut unsure = true;
    let mut failures = 0u32;
    loop {
        wake.borrow_and_update();
        let conn = leadership.conn();
        let checkpoint = checkpoints::read(conn, log.schema, key)
            .await?
            .context("the publisher's checkpoint is missing")?;
        let from = checkpoint.position();
        let events = read::read(conn, log.schema, from, settings.batch_size).await?;
        if events.is_empty() {
            let _ = tokio::time::timeout(settings.poll_interval, wake.changed()).await;
            continue;
        }
        let sent = async {
            let mut skip = 0;
            if unsure {
                jetstream.ensure_stream().await?;
                if let Some(last) = jetstream.last_published(log.schema).await? {
                    skip = events
                        .iter()
                        .position(|e| e.envelope.event_id == last)
                        .map_or(0, |i| i + 1);
                }
            }
            jetstream
                .publish(log.schema, &events[skip..], settings.ack_timeout)
                .await?;
            metrics::counter!(PUBLISHED, "log" => log.schema)
                .increment((events.len() - skip) as u64);
            anyhow::Ok(())
        }
        .await;
        let advance = match sent {
            Ok(()) => {
                unsure = false;
                failures = 0;
                Advance {
                    from,
                    to: events.last().map_or(from, |e| e.position),
                    applied: events.len() as i64,
                    attempts: 0,
                    last_error: None,
                }
            }
            Err(error) => {
                unsure = true;
                failures += 1;
                let error = format!("{error:#}");
                tracing::warn!(log = log.schema, error, "publishing failed; retrying");
                Advance {
                    from,
                    to: from,
                    applied: 0,
                    attempts: checkpoint.attempts.saturating_add(1),
                    last_error: Some(error),
                }
            }
        };
        let conn = leadership.conn();
        let moved = checkpoints::advance(conn, log.schema, key, advance).await?;
        anyhow::ensure!(
            moved,
            "the checkpoint of {PUBLISHER}<-{} moved under its leader",
            log.schema
        );
        if failures > 0 {
            tokio::time::sleep(backoff(failures)).await;
        }
    }
}

/// `emporium_events_published_total`: events this process published, by log.
pub const PUBLISHED: &str = "emporium_events_published_total";

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}
