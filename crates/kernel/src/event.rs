//! The integration-event envelope every module publishes (plain data; the Postgres event
//! log that stores and delivers it is `db::events`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

/// `{"event_id", "event_type", "aggregate_id", "aggregate_version", "occurred_at",
/// "schema_version", "payload"}`, as the contract defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub event_id: Uuid,
    pub event_type: String,
    pub aggregate_id: Uuid,
    pub aggregate_version: i64,
    pub occurred_at: DateTime<Utc>,
    pub schema_version: i32,
    pub payload: serde_json::Value,
}

impl Envelope {
    /// The payload as the type its event type promises.
    pub fn payload<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_value(self.payload.clone()).map_err(|e| {
            anyhow::anyhow!(
                "event {} ({}) has a malformed payload: {e}",
                self.event_id,
                self.event_type
            )
        })
    }
}

/// An event about to be appended: the log assigns its id and time.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: &'static str,
    pub aggregate_id: Uuid,
    pub aggregate_version: i64,
    pub payload: serde_json::Value,
}

impl NewEvent {
    pub fn new<T: Serialize>(
        event_type: &'static str,
        aggregate_id: impl Into<Uuid>,
        version: i64,
        payload: &T,
    ) -> Self {
        NewEvent {
            event_type,
            aggregate_id: aggregate_id.into(),
            aggregate_version: version,
            payload: serde_json::to_value(payload).expect("event payloads serialize"),
        }
    }
}
