//! The integration-event envelope every module publishes, and the [`Actor`] it names
//! (plain data; the Postgres event log that stores and delivers it is `crates/eventlog`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::contract::Payload;
use uuid::Uuid;

/// `{"event_id", "event_type", "aggregate_id", "aggregate_version", "occurred_at",
/// "schema_version", "actor", "correlation_id", "payload"}`, as the contract defines it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Envelope {
    /// Unique per event; the `Nats-Msg-Id` of its message.
    #[schema(value_type = String, format = "uuid")]
    pub event_id: Uuid,
    pub event_type: String,
    /// The order, payment, product or user the event is about.
    #[schema(value_type = String, format = "uuid")]
    pub aggregate_id: Uuid,
    /// The aggregate's version after the event: 1, 2, ... per aggregate.
    pub aggregate_version: i64,
    pub occurred_at: DateTime<Utc>,
    /// The version of the payload's shape (see the event type).
    pub schema_version: i32,
    /// Who caused the event (the audit trail). Envelopes stored before it existed read as
    /// `system`.
    #[serde(default)]
    pub actor: Actor,
    /// The request id of the request that caused it, carried on through the steps other
    /// modules take because of it; `None` for the system's own work (such as expiry).
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// The event type's payload, at `schema_version`.
    // Kept as the JSON text it was read or written as, decoded only into the type a reader
    // asks for (`Envelope::payload`): as text it takes a fraction of the memory of a
    // `serde_json::Value` (a replay holds thousands), and it passes to NATS as it is.
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
}

/// Equal when every field is, the payloads as JSON values (the same payload written by
/// serde and read back from Postgres differs in its spaces).
impl PartialEq for Envelope {
    fn eq(&self, other: &Self) -> bool {
        (
            self.event_id,
            &self.event_type,
            self.aggregate_id,
            self.aggregate_version,
            self.occurred_at,
            self.schema_version,
            self.actor,
            &self.correlation_id,
        ) == (
            other.event_id,
            &other.event_type,
            other.aggregate_id,
            other.aggregate_version,
            other.occurred_at,
            other.schema_version,
            other.actor,
            &other.correlation_id,
        ) && self.payload_json().ok() == other.payload_json().ok()
    }
}

/// Who caused an event: `{"kind": "user" | "admin_token" | "system", "id": <user id or
/// null>}`. A request made without credentials (a registration) is a `user` with no id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Actor {
    pub kind: ActorKind,
    /// The user's id for `user` (null for a caller without credentials), else null.
    #[schema(value_type = Option<String>, format = "uuid")]
    pub id: Option<Uuid>,
}

impl Actor {
    /// The system's own work: expiry, the saga, the reconciler, start-up.
    pub const SYSTEM: Actor = Actor {
        kind: ActorKind::System,
        id: None,
    };
    /// A caller who sent no credentials.
    pub const ANONYMOUS: Actor = Actor {
        kind: ActorKind::User,
        id: None,
    };
    /// The `ADMIN_TOKEN` break-glass credential.
    pub const ADMIN_TOKEN: Actor = Actor {
        kind: ActorKind::AdminToken,
        id: None,
    };

    pub fn user(id: impl Into<Uuid>) -> Actor {
        Actor {
            kind: ActorKind::User,
            id: Some(id.into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    AdminToken,
    #[default]
    System,
}

impl ActorKind {
    pub const ALL: [ActorKind; 3] = [ActorKind::User, ActorKind::AdminToken, ActorKind::System];

    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::AdminToken => "admin_token",
            ActorKind::System => "system",
        }
    }
}

impl std::str::FromStr for ActorKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ActorKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| format!("unknown actor kind {text:?}"))
    }
}

impl Envelope {
    /// The payload as the type its event type promises, upcast from the version it was
    /// written at ([`Payload::read`]).
    pub fn payload<T: Payload>(&self) -> anyhow::Result<T> {
        let read = if self.schema_version == T::SCHEMA_VERSION {
            // The current shape is decoded from the text at once; only an older one goes
            // through a `Value` to be upcast.
            serde_json::from_str(self.payload.get()).map_err(anyhow::Error::from)
        } else {
            self.payload_json()
                .and_then(|payload| T::read(self.schema_version, payload))
        };
        read.map_err(|e| {
            anyhow::anyhow!(
                "event {} ({} v{}) has a malformed payload: {e:#}",
                self.event_id,
                self.event_type,
                self.schema_version
            )
        })
    }
}

impl Envelope {
    /// The payload as a JSON value, whatever its type.
    pub fn payload_json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(self.payload.get())?)
    }

    /// `payload` as the text a payload is kept as.
    pub fn raw_payload(payload: &serde_json::Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(payload).expect("a JSON value serializes")
    }
}

/// An event about to be appended: the log assigns its id and time.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: &'static str,
    pub aggregate_id: Uuid,
    pub aggregate_version: i64,
    pub schema_version: i32,
    pub payload: serde_json::Value,
}

impl NewEvent {
    /// `payload` at its type's [`Payload::SCHEMA_VERSION`].
    pub fn new<T: Payload>(
        event_type: &'static str,
        aggregate_id: impl Into<Uuid>,
        version: i64,
        payload: &T,
    ) -> Self {
        NewEvent {
            event_type,
            aggregate_id: aggregate_id.into(),
            aggregate_version: version,
            schema_version: T::SCHEMA_VERSION,
            payload: serde_json::to_value(payload).expect("event payloads serialize"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_read_as_the_contract_writes_them() {
        let user = Uuid::now_v7();
        assert_eq!(
            serde_json::to_value(Actor::user(user)).unwrap(),
            serde_json::json!({"kind": "user", "id": user})
        );
        assert_eq!(
            serde_json::to_value(Actor::ADMIN_TOKEN).unwrap(),
            serde_json::json!({"kind": "admin_token", "id": null})
        );
        for kind in ActorKind::ALL {
            assert_eq!(kind.as_str().parse::<ActorKind>().unwrap(), kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        let old: Envelope = serde_json::from_value(serde_json::json!({
            "event_id": Uuid::now_v7(), "event_type": "t", "aggregate_id": Uuid::now_v7(),
            "aggregate_version": 1, "occurred_at": "2026-12-01T00:00:00Z", "schema_version": 1,
            "payload": {}
        }))
        .unwrap();
        assert_eq!((old.actor, old.correlation_id), (Actor::SYSTEM, None));
    }

    /// The payload as text: kept verbatim through JSON (NATS), through a `Value` (a dead
    /// letter's column), and equal to itself however it is spaced.
    #[test]
    fn a_payload_is_kept_as_its_text() {
        let payload = serde_json::json!({"n": 1, "items": [{"name": "Mug"}]});
        let envelope = Envelope {
            event_id: Uuid::now_v7(),
            event_type: "t".into(),
            aggregate_id: Uuid::now_v7(),
            aggregate_version: 1,
            occurred_at: Utc::now(),
            schema_version: 1,
            actor: Actor::SYSTEM,
            correlation_id: Some("req-1".into()),
            payload: Envelope::raw_payload(&payload),
        };
        let text = serde_json::to_string(&envelope).unwrap();
        let verbatim = format!(r#""payload":{}}}"#, envelope.payload.get());
        assert!(text.ends_with(&verbatim), "{text}");
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back.payload.get(), envelope.payload.get());
        let through_value: Envelope =
            serde_json::from_value(serde_json::to_value(&envelope).unwrap()).unwrap();
        assert_eq!(through_value.payload_json().unwrap(), payload);
        let spaced = Envelope {
            payload: RawValue::from_string(r#"{"n": 1, "items": [{"name": "Mug"}]}"#.into())
                .unwrap(),
            ..envelope.clone()
        };
        assert_eq!(spaced, envelope);
        let other = Envelope {
            payload: Envelope::raw_payload(&serde_json::json!({"n": 2})),
            ..envelope.clone()
        };
        assert_ne!(other, envelope);
    }
}
