//! Invariant 4 against NATS, after a round whose servers publish: the whole stream
//! `EMPORIUM` read back (`natsserver::stream_messages`) and judged against every module's
//! log by `invariants::stream` (each event once, in log order, under its subject and
//! `Nats-Msg-Id`, nothing else), and each message's body the envelope of its event.

use std::collections::HashMap;

use anyhow::{Context, Result};
use invariants::stream::{Logged, MODULE_LOGS, Message, STREAM, log_events, stream_violations};
use serde_json::{Value, json};

/// Reads of the logs and the stream before giving up on their agreeing in time: the
/// round has settled, so nothing should write between the two, but an event written
/// meanwhile would show as a message of no logged event.
const READS: usize = 3;

/// The envelope's fields a body is compared in (the log's columns of them).
const ENVELOPE: [&str; 5] = [
    "event_id",
    "event_type",
    "aggregate_id",
    "aggregate_version",
    "payload",
];

/// Bodies reported at most, of those that are not their event's envelope.
const SHOWN: usize = 5;

/// An event of a log, as its message's body must carry it.
struct Event {
    logged: Logged,
    envelope: Value,
}

/// What is wrong with the stream, and how many messages it holds.
pub(super) async fn check(
    client: &tokio_postgres::Client,
    nats_url: &str,
) -> Result<(Vec<String>, usize)> {
    let mut read = 0;
    loop {
        read += 1;
        let logs = logs(client).await?;
        let stream = natsserver::stream_messages(nats_url, STREAM)
            .await
            .context("reading the stream back")?;
        let logged: usize = logs.iter().map(|(_, events)| events.len()).sum();
        if logged != logs_length(client).await? && read < READS {
            continue;
        }
        let messages: Vec<Message> = stream
            .iter()
            .map(|m| Message {
                subject: m.subject.clone(),
                msg_id: m.msg_id.clone(),
            })
            .collect();
        let verdict: Vec<(&str, Vec<Logged>)> = logs
            .iter()
            .map(|(module, events)| (*module, events.iter().map(|e| e.logged.clone()).collect()))
            .collect();
        let mut found = stream_violations(&verdict, &messages);
        let by_id: HashMap<&str, &Event> = logs
            .iter()
            .flat_map(|(_, events)| events)
            .map(|e| (e.logged.event_id.as_str(), e))
            .collect();
        let mut wrong = Vec::new();
        for message in &stream {
            let Some(event) = by_id.get(message.msg_id.as_str()) else {
                continue; // reported by the verdict
            };
            let body: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
            let differs: Vec<&str> = ENVELOPE
                .into_iter()
                .filter(|field| body.get(field) != event.envelope.get(field))
                .collect();
            if !differs.is_empty() {
                wrong.push(format!(
                    "message {} (event {}) differs from its envelope in {differs:?}: {body}",
                    message.sequence, message.msg_id
                ));
            }
        }
        if !wrong.is_empty() {
            found.push(format!(
                "{} messages' bodies are not their events' envelopes",
                wrong.len()
            ));
            found.extend(wrong.into_iter().take(SHOWN));
        }
        return Ok((found, stream.len()));
    }
}

/// Every module log's events in log order.
async fn logs(client: &tokio_postgres::Client) -> Result<Vec<(&'static str, Vec<Event>)>> {
    let mut logs = Vec::new();
    for module in MODULE_LOGS {
        let rows = client
            .query(log_events(module).as_str(), &[])
            .await
            .with_context(|| format!("reading the {module} log"))?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let (event_id, event_type): (String, String) =
                (row.get("event_id"), row.get("event_type"));
            let payload: String = row.get("payload");
            let envelope = json!({
                "event_id": event_id,
                "event_type": event_type,
                "aggregate_id": row.get::<_, String>("aggregate_id"),
                "aggregate_version": row.get::<_, i64>("aggregate_version"),
                "payload": serde_json::from_str::<Value>(&payload)
                    .context("a payload that is no JSON")?,
            });
            events.push(Event {
                logged: Logged {
                    event_id,
                    event_type,
                },
                envelope,
            });
        }
        logs.push((module, events));
    }
    Ok(logs)
}

/// Events in every module's log now.
async fn logs_length(client: &tokio_postgres::Client) -> Result<usize> {
    let mut total = 0;
    for module in MODULE_LOGS {
        let sql = format!("SELECT count(*) AS n FROM {module}.events");
        total += super::check::scalar(client, &sql).await? as usize;
    }
    Ok(total)
}
