//! A consumer in another service: reads emporium's events from NATS JetStream with a
//! durable pull consumer, and needs nothing of emporium but the contract (stream
//! `EMPORIUM`, subjects `emporium.<module>.<event_type>`, the envelope as the body).
//!
//! ```text
//! NATS_URL=nats://127.0.0.1:4222 cargo run -p eventlog --example consume_stream -- 'emporium.orders.>'
//! ```
//!
//! It prints one line per event and acknowledges it, and stops when nothing new came for
//! two seconds; run again, it goes on where it stopped (the consumer is durable). Delivery
//! is at least once: a consumer that must not act twice keeps the `event_id`s it handled,
//! in the same transaction as what it does with them.

use std::time::Duration;

use anyhow::{Context, anyhow};
use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt;

/// One event as the consumer saw it.
#[derive(Debug)]
pub struct Received {
    pub subject: String,
    pub envelope: serde_json::Value,
}

/// Reads every event on `filter` not yet acknowledged by durable consumer `durable`, in
/// stream order, acknowledging each, until none came for `idle`.
pub async fn consume(
    nats_url: &str,
    durable: &str,
    filter: &str,
    idle: Duration,
) -> anyhow::Result<Vec<Received>> {
    let client = async_nats::connect(nats_url)
        .await
        .with_context(|| format!("connecting to {nats_url}"))?;
    let stream = jetstream::new(client)
        .get_stream("EMPORIUM")
        .await
        .map_err(|e| anyhow!("finding stream EMPORIUM: {e}"))?;
    let consumer = stream
        .get_or_create_consumer(
            durable,
            pull::Config {
                durable_name: Some(durable.to_owned()),
                filter_subject: filter.to_owned(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow!("creating consumer {durable}: {e}"))?;
    let mut received = Vec::new();
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(100)
            .expires(idle)
            .messages()
            .await
            .map_err(|e| anyhow!("fetching: {e}"))?;
        let before = received.len();
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| anyhow!("receiving: {e}"))?;
            let envelope = serde_json::from_slice(&message.payload).context("an envelope")?;
            received.push(Received {
                subject: message.subject.to_string(),
                envelope,
            });
            message
                .ack()
                .await
                .map_err(|e| anyhow!("acknowledging: {e}"))?;
        }
        if received.len() == before {
            return Ok(received);
        }
    }
}

// An example's output is its point.
#[allow(clippy::print_stdout)]
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let filter = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "emporium.>".into());
    for event in consume(&url, "example", &filter, Duration::from_secs(2)).await? {
        println!(
            "{} {} {}",
            event.subject, event.envelope["event_id"], event.envelope["payload"]
        );
    }
    Ok(())
}
