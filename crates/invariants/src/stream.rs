//! Invariant 4 against NATS JetStream (with `NATS_URL`): every event of every module's log
//! is in stream `EMPORIUM` exactly once, under `emporium.<module>.<event_type>` with
//! `Nats-Msg-Id` = its id, in log order per module, and the stream holds nothing else.
//! The caller reads the logs (with [`log_events`]) and the stream (crate `natsserver`'s
//! `stream_messages` reads one back); this is the verdict, so the app suite and
//! `cargo xtask chaos` judge alike.

use std::collections::HashMap;

/// The contract's stream (`eventlog::STREAM`, which this crate may not link; held to it
/// by `tests::the_stream_is_the_publishers`).
pub const STREAM: &str = "EMPORIUM";

/// The module logs that are published.
pub const MODULE_LOGS: [&str; 4] = ["users", "products", "orders", "payments"];

/// A query for `module`'s log in log order: text columns `event_id` and `event_type`, and
/// for whoever also compares the messages' bodies with the envelopes, `aggregate_id`
/// (text), `aggregate_version` (bigint) and `payload` (text, JSON).
pub fn log_events(module: &str) -> String {
    format!(
        "SELECT event_id::text AS event_id, event_type, aggregate_id::text AS aggregate_id, \
         aggregate_version, payload::text AS payload FROM {module}.events ORDER BY xid, seq"
    )
}

/// One event of a log.
#[derive(Clone, Debug)]
pub struct Logged {
    pub event_id: String,
    pub event_type: String,
}

/// One message of the stream, in stream order.
#[derive(Clone, Debug)]
pub struct Message {
    pub subject: String,
    /// Its `Nats-Msg-Id` header (empty if it has none).
    pub msg_id: String,
}

/// What is wrong, one line per violation (the first few of each kind); empty when the
/// stream is exactly the logs.
pub fn stream_violations(logs: &[(&str, Vec<Logged>)], stream: &[Message]) -> Vec<String> {
    let mut violations = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for message in stream {
        *seen.entry(message.msg_id.as_str()).or_default() += 1;
    }
    let mut twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    twice.sort();
    for (id, n) in twice.into_iter().take(5) {
        violations.push(format!("event {id} is in the stream {n} times"));
    }
    let mut claimed = 0;
    for (module, events) in logs {
        let prefix = format!("emporium.{module}.");
        let published: Vec<&Message> = stream
            .iter()
            .filter(|m| m.subject.starts_with(&prefix))
            .collect();
        claimed += published.len();
        let ids: std::collections::HashSet<&str> =
            published.iter().map(|m| m.msg_id.as_str()).collect();
        let missing: Vec<&str> = events
            .iter()
            .map(|e| e.event_id.as_str())
            .filter(|id| !ids.contains(id))
            .collect();
        if !missing.is_empty() {
            violations.push(format!(
                "{} of {} events of the {module} log are not in the stream, e.g. {:?}",
                missing.len(),
                events.len(),
                &missing[..missing.len().min(3)]
            ));
        }
        // Each id where it first appears: a duplicate is reported above.
        let mut kept = std::collections::HashSet::new();
        let order: Vec<&str> = published
            .iter()
            .map(|m| m.msg_id.as_str())
            .filter(|id| kept.insert(*id))
            .collect();
        let logged: Vec<&str> = events
            .iter()
            .map(|e| e.event_id.as_str())
            .filter(|id| ids.contains(id))
            .collect();
        if order != logged {
            violations.push(format!(
                "the stream holds the {module} log's events out of log order"
            ));
        }
        let types: HashMap<&str, &str> = events
            .iter()
            .map(|e| (e.event_id.as_str(), e.event_type.as_str()))
            .collect();
        for message in &published {
            match types.get(message.msg_id.as_str()) {
                Some(t) if message.subject == format!("{prefix}{t}") => {}
                Some(t) => violations.push(format!(
                    "event {} of type {t} under subject {}",
                    message.msg_id, message.subject
                )),
                None => violations.push(format!(
                    "message {:?} under {} is no event of the {module} log",
                    message.msg_id, message.subject
                )),
            }
        }
    }
    if claimed != stream.len() {
        violations.push(format!(
            "{} messages of the stream are under no module's subjects",
            stream.len() - claimed
        ));
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(id: &str, event_type: &str) -> Logged {
        Logged {
            event_id: id.into(),
            event_type: event_type.into(),
        }
    }

    fn message(subject: &str, id: &str) -> Message {
        Message {
            subject: subject.into(),
            msg_id: id.into(),
        }
    }

    #[test]
    fn the_stream_is_the_publishers() {
        assert_eq!(STREAM, eventlog::STREAM);
    }

    #[test]
    fn each_kind_of_violation_is_caught() {
        let logs = vec![(
            "orders",
            vec![logged("a", "order.created"), logged("b", "order.confirmed")],
        )];
        let exact = [
            message("emporium.orders.order.created", "a"),
            message("emporium.orders.order.confirmed", "b"),
        ];
        assert!(stream_violations(&logs, &exact).is_empty());
        let cases: [(&[Message], &str); 5] = [
            (&exact[..1], "not in the stream"),
            (&[exact[1].clone(), exact[0].clone()], "out of log order"),
            (
                &[exact[0].clone(), exact[0].clone(), exact[1].clone()],
                "2 times",
            ),
            (
                &[
                    exact[0].clone(),
                    message("emporium.orders.order.shipped", "b"),
                ],
                "under subject",
            ),
            (
                &[exact[0].clone(), exact[1].clone(), message("other.x", "c")],
                "under no module",
            ),
        ];
        for (stream, expected) in cases {
            let found = stream_violations(&logs, stream);
            assert!(
                found.iter().any(|v| v.contains(expected)),
                "{expected}: {found:?}"
            );
        }
    }
}
