//! The event catalog: an AsyncAPI 3 document (`GET /asyncapi.json`, `emporium asyncapi`)
//! generated from the code, beside the OpenAPI document of the HTTP API.
//!
//! Its facts come from where the code keeps them: each module's event types, payload
//! schemas and `schema_version`s from its `-api` crate's `events::LOG`
//! ([`kernel::contract`]), and each subscriber's event types from the [`Subscribes`] it
//! filters by. Each event type is a channel (its NATS subject) with one message: the
//! envelope, whose `payload` is the type's schema; the publisher's `send` operation puts it
//! there. Who produces it and who subscribes in the process are `x-producer` and
//! `x-subscribers`. `cargo xtask docs` writes the document to `docs/asyncapi.json`, with
//! `docs/events.md` and the module diagram of ARCHITECTURE.md made from it; CI fails when
//! they are stale, and validates the document with `@asyncapi/parser`.

use std::sync::LazyLock;

use actix_web::http::header::EntityTag;
use actix_web::{HttpRequest, HttpResponse, web};
use kernel::http::{Caching, PROBLEM_JSON};
use kernel::openapi::{NotModified, Revalidate, Routes};
use kernel::{Log, Problem, Subscribes};
use serde_json::{Map, Value, json};
use utoipa::PartialSchema;

/// Every module's event log, in the order of the modules.
pub const LOGS: [Log; 4] = [
    users_api::events::LOG,
    products_api::events::LOG,
    orders_api::events::LOG,
    payments_api::events::LOG,
];

/// Every subscriber in the process but the publisher (which takes every event type of
/// every log, see [`PUBLISHER`]), with the crate it lives in.
pub const SUBSCRIBERS: [(&str, Subscribes); 2] = [
    ("orders-read", orders_read::SUBSCRIBES),
    ("orders", orders::SUBSCRIBES),
];

/// The publisher to NATS JetStream, as the catalog lists it.
pub const PUBLISHER: &str = eventlog::PUBLISHER;

/// The catalog as an AsyncAPI 3.0 document.
pub fn document() -> Value {
    let (mut channels, mut operations, mut messages) = (Map::new(), Map::new(), Map::new());
    let mut schemas = Map::new();
    for (name, schema) in [
        ("Envelope", schema_json(kernel::Envelope::schema())),
        ("Actor", schema_json(kernel::Actor::schema())),
        ("ActorKind", schema_json(kernel::ActorKind::schema())),
    ] {
        schemas.insert(name.to_owned(), schema);
    }
    for log in LOGS {
        for contract in log.events {
            let event_type = contract.event_type;
            let channel = format!("{}.{event_type}", log.module);
            let payload = (contract.payload)().into_owned();
            if let Value::Object(referred) = contract.schema_json() {
                for (name, schema) in referred {
                    // One name, one schema: the unit test holds every reuse of a name equal.
                    schemas.entry(name).or_insert(schema);
                }
            }
            let envelope = format!("{event_type}.envelope");
            schemas.insert(
                envelope.clone(),
                json!({
                    "description": format!(
                        "The envelope of `{event_type}`, its payload at schema_version {}.",
                        contract.schema_version
                    ),
                    "allOf": [
                        {"$ref": "#/components/schemas/Envelope"},
                        {
                            "type": "object",
                            "properties": {
                                "event_type": {"const": event_type},
                                "schema_version": {"const": contract.schema_version},
                                "payload": {"$ref": format!("#/components/schemas/{payload}")},
                            },
                        },
                    ],
                }),
            );
            let subscribers: Vec<&str> = SUBSCRIBERS
                .iter()
                .filter(|(_, s)| s.handles(event_type))
                .map(|(_, s)| s.subscriber)
                .chain([PUBLISHER])
                .collect();
            messages.insert(
                event_type.to_owned(),
                json!({
                    "name": event_type,
                    "title": event_type,
                    "summary": contract.summary,
                    "contentType": "application/json",
                    "headers": {
                        "type": "object",
                        "required": ["Nats-Msg-Id"],
                        "properties": {
                            "Nats-Msg-Id": {
                                "type": "string",
                                "format": "uuid",
                                "description": "The envelope's `event_id`: JetStream drops a \
                                                duplicate within its window.",
                            },
                        },
                    },
                    "payload": {"$ref": format!("#/components/schemas/{envelope}")},
                    "examples": [{
                        "name": "sample",
                        "headers": {"Nats-Msg-Id": SAMPLE_EVENT_ID},
                        "payload": sample_envelope(event_type, contract.schema_version,
                                                   (contract.sample)()),
                    }],
                    "x-producer": log.module,
                    "x-schema-version": contract.schema_version,
                    "x-reads-versions": (1..=contract.schema_version).collect::<Vec<_>>(),
                    "x-subscribers": subscribers,
                }),
            );
            channels.insert(
                channel.clone(),
                json!({
                    "address": eventlog::subject(log.module, event_type),
                    "title": event_type,
                    "description": format!(
                        "{} Written by the {} module to its event log with the change, in one \
                         transaction; published here in log order.",
                        contract.summary, log.module
                    ),
                    "messages": {
                        event_type: {"$ref": format!("#/components/messages/{event_type}")},
                    },
                }),
            );
            operations.insert(
                format!("publish.{channel}"),
                json!({
                    "action": "send",
                    "title": format!("Publish {event_type}"),
                    "summary": format!(
                        "The {PUBLISHER} of the {} log sends each event once it is committed; \
                         its checkpoint moves after JetStream's acknowledgement.",
                        log.module
                    ),
                    "channel": {"$ref": format!("#/channels/{channel}")},
                    "messages": [
                        {"$ref": format!("#/channels/{channel}/messages/{event_type}")},
                    ],
                }),
            );
        }
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "emporium events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "The NATS server of `NATS_URL`, stream `EMPORIUM` (JetStream): \
                                subjects `emporium.>`, kept 7 days, duplicates dropped within \
                                2 minutes.",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
        "x-subscribers": SUBSCRIBERS
            .iter()
            .map(|(krate, s)| json!({"name": s.subscriber, "crate": krate, "summary": s.summary,
                            "sources": s.sources.iter().map(|(module, types)| {
                                json!({"module": module, "event_types": types})
                            }).collect::<Vec<_>>()}))
            .chain([json!({"name": PUBLISHER, "crate": "eventlog", "summary": PUBLISHER_SUMMARY,
                           "sources": LOGS.iter().map(|log| json!({"module": log.module,
                               "event_types": log.events.iter().map(|c| c.event_type)
                                   .collect::<Vec<_>>()})).collect::<Vec<_>>()})])
            .collect::<Vec<_>>(),
    })
}

const SAMPLE_EVENT_ID: &str = "01936a2e-7c00-7000-8000-0000000000e1";

const PUBLISHER_SUMMARY: &str = "Publishes every event of its log to NATS JetStream (with \
     `NATS_URL`), one instance per log at a time.";

const DESCRIPTION: &str = "\
The integration events of emporium, generated from the code. Each module writes its events to \
its own event log in the same transaction as the change they describe (a transactional outbox); \
they are delivered at least once to each subscriber in the process, which applies each exactly \
once in effect, and, with `NATS_URL` set, published to NATS JetStream: stream `EMPORIUM`, \
subject `emporium.<module>.<event_type>`, body the envelope, header `Nats-Msg-Id` = \
`event_id`, in log order per module.

Versions: `schema_version` is the version of the payload's shape. A change of shape bumps it, \
and every subscriber still reads each older version (an upcaster per bump), so a log that holds \
both replays. A consumer should do the same, or read `schema_version` before the payload.

`x-producer` names the module that writes a message; `x-schema-version` the version this \
release writes, `x-reads-versions` every version it reads (the older shapes are in the golden \
files of the module's `-api` crate, `tests/it/golden/`); `x-subscribers` the subscribers in the \
process that act on it (the read model's projection `orders_read`, the order saga \
`orders_saga`, and the publisher `nats_publisher`, which takes every event).";

fn schema_json(schema: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>) -> Value {
    serde_json::to_value(schema).expect("schemas serialize")
}

fn sample_envelope(event_type: &str, schema_version: i32, payload: Value) -> Value {
    json!({
        "event_id": SAMPLE_EVENT_ID,
        "event_type": event_type,
        "aggregate_id": "01936a2e-7c00-7000-8000-000000000002",
        "aggregate_version": 1,
        "occurred_at": "2026-12-01T12:00:00Z",
        "schema_version": schema_version,
        "actor": {"kind": "user", "id": "01936a2e-7c00-7000-8000-000000000001"},
        "correlation_id": "req-4f2c",
        "payload": payload,
    })
}

/// The document as served: pretty, as `docs/asyncapi.json` holds it.
pub fn text() -> String {
    serde_json::to_string_pretty(&document()).expect("JSON") + "\n"
}

/// The document's route, served and not listed in the OpenAPI document (it is not an
/// operation of the HTTP API).
pub(crate) fn endpoints() -> Routes {
    Routes::default().unlisted(__path_asyncapi_json, asyncapi_json)
}

static DOCUMENT: LazyLock<(web::Bytes, EntityTag)> = LazyLock::new(|| {
    let text = text();
    let tag = kernel::http::etag(text.as_bytes());
    (text.into(), tag)
});

/// The event catalog
///
/// AsyncAPI 3.0, generated from the code: every event type, its payload's schema and
/// version, its producer and its subscribers.
#[utoipa::path(
    get,
    path = "/asyncapi.json",
    tag = "operations",
    operation_id = "asyncapi",
    params(Revalidate),
    responses(
        (status = 200, description = "The event catalog.", body = Object,
            headers(("ETag" = String, description = "Changes with the document."),
                ("Cache-Control" = String, description = "`public, no-cache`."))),
        (status = 304, response = NotModified),
        (status = 400, description = "`invalid_header`: an `If-None-Match` that is not a list \
            of entity tags.", body = Problem, content_type = PROBLEM_JSON),
    )
)]
async fn asyncapi_json(req: HttpRequest) -> Result<HttpResponse, Problem> {
    let (text, tag) = &*DOCUMENT;
    kernel::http::cached_as(
        &req,
        Caching::Public(std::time::Duration::ZERO),
        "application/json",
        text.clone(),
        tag.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The catalog keeps one schema per name: two payload types of one name (in two
    /// modules, say) would make one of them wrong.
    #[test]
    fn a_schema_name_means_one_schema_across_every_log() {
        let mut seen: std::collections::BTreeMap<String, Value> = Default::default();
        for log in LOGS {
            for contract in log.events {
                let Value::Object(schemas) = contract.schema_json() else {
                    panic!("{}: schemas are an object", contract.event_type);
                };
                for (name, schema) in schemas {
                    let first = seen.entry(name.clone()).or_insert_with(|| schema.clone());
                    assert_eq!(*first, schema, "two schemas named {name}");
                }
            }
        }
        for (_, subscriber) in SUBSCRIBERS {
            assert_eq!(subscriber.unknown_in(&LOGS), Vec::<String>::new());
        }
        for name in ["Envelope", "Actor", "ActorKind"] {
            assert!(!seen.contains_key(name), "a payload schema is named {name}");
        }
    }

    #[test]
    fn every_event_type_is_a_channel_with_its_message_and_its_subscribers() {
        let document = document();
        let types: usize = LOGS.iter().map(|log| log.events.len()).sum();
        assert_eq!(types, 14, "the contract's fourteen event types");
        assert_eq!(document["channels"].as_object().unwrap().len(), types);
        let created = &document["components"]["messages"]["order.created"];
        assert_eq!(created["x-producer"], "orders");
        assert_eq!(created["x-schema-version"], 2);
        assert_eq!(created["x-subscribers"], json!(["orders_read", PUBLISHER]));
        let captured = &document["components"]["messages"]["payment.captured"];
        assert_eq!(captured["x-subscribers"], json!(["orders_saga", PUBLISHER]));
        let restocked = &document["components"]["messages"]["product.restocked"];
        assert_eq!(restocked["x-subscribers"], json!([PUBLISHER]));
        assert_eq!(
            document["channels"]["orders.order.created"]["address"],
            "emporium.orders.order.created"
        );
        assert_eq!(created["x-reads-versions"], json!([1, 2]));
        // Every `$ref` names something the document holds.
        let text = document.to_string();
        for reference in text.split("\"$ref\":\"#/").skip(1) {
            let path = &reference[..reference.find('"').unwrap()];
            let target = path
                .split('/')
                .try_fold(&document, |node, key| node.get(key.replace("~1", "/")));
            assert!(target.is_some(), "dangling $ref #/{path}");
        }
    }
}
