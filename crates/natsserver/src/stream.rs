//! Reading a JetStream stream back, whole: what a test or `cargo xtask chaos` judges after
//! a run. Any stream of any server; nothing here knows what the messages mean.

use anyhow::{Context, Result, anyhow};
use async_nats::header::NATS_MESSAGE_ID;
use futures_util::{StreamExt, TryStreamExt};

/// Requests in flight while reading: one at a time, a stream of thousands of messages
/// takes seconds.
const IN_FLIGHT: usize = 64;

/// One message a stream holds.
#[derive(Clone, Debug)]
pub struct StoredMessage {
    /// Its sequence number in the stream.
    pub sequence: u64,
    pub subject: String,
    /// Its `Nats-Msg-Id` header (empty if it has none).
    pub msg_id: String,
    pub payload: Vec<u8>,
}

/// Every message stream `name` of the server at `url` holds, in stream order.
pub async fn stream_messages(url: &str, name: &str) -> Result<Vec<StoredMessage>> {
    let client = async_nats::connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let context = async_nats::jetstream::new(client);
    let mut stream = context
        .get_stream(name)
        .await
        .map_err(|e| anyhow!("finding stream {name}: {e}"))?;
    let info = stream
        .info()
        .await
        .map_err(|e| anyhow!("reading stream {name}'s state: {e}"))?;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    if info.state.messages == 0 {
        return Ok(Vec::new());
    }
    let stream = &stream;
    futures_util::stream::iter(first..=last)
        .map(|sequence| async move {
            let message = stream
                .get_raw_message(sequence)
                .await
                .map_err(|e| anyhow!("reading message {sequence} of stream {name}: {e}"))?;
            let msg_id = message
                .headers
                .get(NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            Ok(StoredMessage {
                sequence: message.sequence,
                subject: message.subject.to_string(),
                msg_id,
                payload: message.payload.to_vec(),
            })
        })
        .buffered(IN_FLIGHT)
        .try_collect()
        .await
}
