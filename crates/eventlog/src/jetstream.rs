//! The NATS JetStream side of publishing: the stream, created or verified; a batch sent
//! and acknowledged; and the last event of a log that the stream already holds.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use async_nats::jetstream::{self, Context, stream};
use async_nats::{HeaderMap, header::NATS_MESSAGE_ID};
use uuid::Uuid;

use crate::LoggedEvent;

/// The stream every module's events go to.
pub const STREAM: &str = "EMPORIUM";

/// What the stream keeps, and how long it remembers a `Nats-Msg-Id`.
#[derive(Clone, Copy, Debug)]
pub struct StreamSettings {
    /// How long a message stays in the stream (limits retention, file storage).
    pub max_age: Duration,
    /// How long JetStream drops a message whose `Nats-Msg-Id` it saw already. It must
    /// outlast the publisher's retry horizon, [`PublishSettings::ack_timeout`] (a batch
    /// sent again after an unknown outcome is sent within it); a publisher that takes
    /// over after longer looks at the stream first (see `publish.rs`).
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
        }
    }
}

/// How a publisher talks to NATS.
#[derive(Clone, Debug)]
pub struct PublishSettings {
    pub nats_url: String,
    pub stream: StreamSettings,
    /// How long a batch may take from its first send to its last acknowledgement; after
    /// that its outcome is unknown and it is sent again.
    pub ack_timeout: Duration,
    /// Events per batch.
    pub batch_size: i64,
    /// Look for new events this often even without a wake-up.
    pub poll_interval: Duration,
    /// A standby instance tries to take over a log this often.
    pub standby_interval: Duration,
}

impl PublishSettings {
    pub fn new(nats_url: impl Into<String>) -> PublishSettings {
        PublishSettings {
            nats_url: nats_url.into(),
            stream: StreamSettings::default(),
            ack_timeout: Duration::from_secs(10),
            batch_size: 200,
            poll_interval: Duration::from_millis(250),
            standby_interval: Duration::from_secs(1),
        }
    }
}

/// The subject of an event of `module`'s log: `emporium.<module>.<event_type>`.
pub fn subject(module: &str, event_type: &str) -> String {
    format!("emporium.{module}.{event_type}")
}

/// A NATS connection and its JetStream context, shared by the publishers of a process.
#[derive(Clone)]
pub(crate) struct JetStream {
    context: Context,
    settings: StreamSettings,
}

impl JetStream {
    /// Connects in the background: the client keeps retrying while NATS is down, and
    /// every call fails (within the context's timeout) until it is back.
    pub(crate) async fn connect(settings: &PublishSettings) -> anyhow::Result<JetStream> {
        let client = async_nats::ConnectOptions::new()
            .name("emporium")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(settings.nats_url.as_str())
            .await
            .with_context(|| format!("connecting to NATS at {}", settings.nats_url))?;
        let mut context = jetstream::new(client);
        context.set_timeout(settings.ack_timeout);
        Ok(JetStream {
            context,
            settings: settings.stream,
        })
    }

    /// Creates the stream, or checks that the one there takes every subject and dedupes
    /// for long enough.
    pub(crate) async fn ensure_stream(&self) -> anyhow::Result<()> {
        let config = stream::Config {
            name: STREAM.to_owned(),
            subjects: vec!["emporium.>".to_owned()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: self.settings.max_age,
            duplicate_window: self.settings.duplicate_window,
            description: Some(
                "emporium's integration events, one subject per module and type".into(),
            ),
            ..stream::Config::default()
        };
        let mut stream = self
            .context
            .get_or_create_stream(config)
            .await
            .map_err(|e| anyhow!("creating or finding stream {STREAM}: {e}"))?;
        let info = stream
            .info()
            .await
            .map_err(|e| anyhow!("reading stream {STREAM}: {e}"))?;
        let subjects = &info.config.subjects;
        ensure!(
            subjects.iter().any(|s| s == "emporium.>"),
            "stream {STREAM} exists with subjects {subjects:?}, not emporium.>"
        );
        ensure!(
            info.config.duplicate_window >= self.settings.duplicate_window,
            "stream {STREAM} dedupes for {:?}, less than the {:?} the publisher needs",
            info.config.duplicate_window,
            self.settings.duplicate_window
        );
        Ok(())
    }

    /// The `Nats-Msg-Id` (an event id) of the last message the stream holds from
    /// `module`'s log, if any.
    pub(crate) async fn last_published(&self, module: &str) -> anyhow::Result<Option<Uuid>> {
        let stream = self
            .context
            .get_stream_no_info(STREAM)
            .await
            .map_err(|e| anyhow!("finding stream {STREAM}: {e}"))?;
        let last = stream
            .get_last_raw_message_by_subject(&subject(module, ">"))
            .await;
        let message = match last {
            Ok(message) => message,
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                return Ok(None);
            }
            Err(e) => bail!("reading the last message of {module} in {STREAM}: {e}"),
        };
        let id = message
            .headers
            .get(NATS_MESSAGE_ID)
            .context("a message without Nats-Msg-Id in the stream")?;
        Uuid::parse_str(id.as_str())
            .map(Some)
            .context("a Nats-Msg-Id that is no event id")
    }

    /// Sends `events` of `module`'s log in order and waits for every acknowledgement
    /// (a duplicate's included), all within the ack timeout.
    pub(crate) async fn publish(
        &self,
        module: &str,
        events: &[LoggedEvent],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let batch = async {
            let mut acks = Vec::with_capacity(events.len());
            for logged in events {
                let event = &logged.envelope;
                let mut headers = HeaderMap::new();
                headers.insert(NATS_MESSAGE_ID, event.event_id.to_string().as_str());
                let body = serde_json::to_vec(event).context("serializing an envelope")?;
                let ack = self
                    .context
                    .publish_with_headers(subject(module, &event.event_type), headers, body.into())
                    .await
                    .map_err(|e| anyhow!("publishing {}: {e}", event.event_id))?;
                acks.push(ack);
            }
            for ack in acks {
                ack.await.map_err(|e| anyhow!("acknowledgement: {e}"))?;
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(timeout, batch)
            .await
            .map_err(|_| anyhow!("no acknowledgement within {timeout:?}"))?
    }
}
