//! Event contracts: what each event type promises, declared once in the code, beside the
//! payload types of each module's `-api` crate.
//!
//! - [`Payload`]: a payload type, its `schema_version`, how payloads written at older
//!   versions are brought up to it ([`Payload::upcast`]), and a sample.
//! - [`Contract`]: one event type and its payload; [`Log`]: a module's event types, the
//!   `events::LOG` constant of each `-api` crate.
//! - [`Subscribes`]: which event types of which logs a subscriber acts on. The subscriber
//!   filters by it, so what the catalog says is what the code does.
//! - [`check_golden`]: the golden test of a [`Log`] against the files checked in beside
//!   it: a payload that changes shape without a `schema_version` bump fails, and so does
//!   an older version's sample that the current type no longer accepts.
//!
//! The app turns the logs and the subscribers into the event catalog (an AsyncAPI 3
//! document, `GET /asyncapi.json`).

use std::borrow::Cow;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use utoipa::openapi::{RefOr, Schema};

/// The type of an event's payload.
pub trait Payload: Serialize + DeserializeOwned + utoipa::ToSchema + 'static {
    /// The version this code writes. Any change of shape bumps it (the golden test fails
    /// otherwise), and [`Payload::upcast`] then reads the versions before.
    const SCHEMA_VERSION: i32 = 1;

    /// A payload written at `version`, older than [`Payload::SCHEMA_VERSION`], rewritten
    /// to the current shape. Only the current version is accepted by default.
    fn upcast(version: i32, _payload: Value) -> anyhow::Result<Value> {
        Err(anyhow::anyhow!(
            "schema_version {version} is not {}, and there is no upcaster from it",
            Self::SCHEMA_VERSION
        ))
    }

    /// A payload as the code writes it: the catalog's example and the golden file's
    /// sample.
    fn sample() -> Self;

    /// A payload of any version this code accepts, as the current type.
    fn read(version: i32, payload: Value) -> anyhow::Result<Self> {
        let payload = match version {
            v if v == Self::SCHEMA_VERSION => payload,
            v if v < 1 => anyhow::bail!("schema_version {v}: versions start at 1"),
            v if v < Self::SCHEMA_VERSION => Self::upcast(v, payload)?,
            v => anyhow::bail!(
                "schema_version {v} is newer than {} (written by a newer release)",
                Self::SCHEMA_VERSION
            ),
        };
        Ok(serde_json::from_value(payload)?)
    }
}

/// One event type: its name, what it means, and its payload.
#[derive(Clone, Copy)]
pub struct Contract {
    pub event_type: &'static str,
    /// One sentence: what happened.
    pub summary: &'static str,
    pub schema_version: i32,
    /// The payload's schema name (a key of the catalog's `components.schemas`).
    pub payload: fn() -> Cow<'static, str>,
    /// The payload's schema, and the schemas it refers to.
    pub schemas: fn() -> Vec<(String, RefOr<Schema>)>,
    /// [`Payload::sample`] as JSON.
    pub sample: fn() -> Value,
    /// Whether a payload of a given version reads as the current type.
    pub accepts: fn(i32, Value) -> anyhow::Result<()>,
}

impl Contract {
    pub const fn of<T: Payload>(event_type: &'static str, summary: &'static str) -> Contract {
        Contract {
            event_type,
            summary,
            schema_version: T::SCHEMA_VERSION,
            payload: T::name,
            schemas: schemas_of::<T>,
            sample: sample_of::<T>,
            accepts: accepts::<T>,
        }
    }

    /// The payload's schema and the schemas it refers to, as JSON (`$ref`s point into
    /// `#/components/schemas/`).
    pub fn schema_json(&self) -> Value {
        let schemas: serde_json::Map<String, Value> = (self.schemas)()
            .into_iter()
            .map(|(name, schema)| {
                (
                    name,
                    serde_json::to_value(schema).expect("schemas serialize"),
                )
            })
            .collect();
        Value::Object(schemas)
    }
}

fn schemas_of<T: Payload>() -> Vec<(String, RefOr<Schema>)> {
    let mut schemas = vec![(T::name().into_owned(), T::schema())];
    T::schemas(&mut schemas);
    schemas.sort_by(|a, b| a.0.cmp(&b.0));
    schemas.dedup_by(|a, b| a.0 == b.0);
    schemas
}

fn sample_of<T: Payload>() -> Value {
    serde_json::to_value(T::sample()).expect("event payloads serialize")
}

fn accepts<T: Payload>(version: i32, payload: Value) -> anyhow::Result<()> {
    T::read(version, payload).map(drop)
}

/// A module's event log: the module (the subject's `<module>`) and its event types.
#[derive(Clone, Copy)]
pub struct Log {
    pub module: &'static str,
    pub events: &'static [Contract],
}

impl Log {
    pub fn contract(&self, event_type: &str) -> Option<&'static Contract> {
        self.events.iter().find(|c| c.event_type == event_type)
    }
}

/// A subscriber's name (its checkpoint key), what it does, and the event types it acts on,
/// per source log (a module). Events of other types pass it by. Event types are unique
/// across modules, so the type alone decides ([`Subscribes::handles`]).
#[derive(Debug, Clone, Copy)]
pub struct Subscribes {
    pub subscriber: &'static str,
    /// One sentence: what it does with them.
    pub summary: &'static str,
    pub sources: &'static [(&'static str, &'static [&'static str])],
}

impl Subscribes {
    /// Whether it acts on events of `event_type`.
    pub fn handles(&self, event_type: &str) -> bool {
        self.sources
            .iter()
            .any(|(_, types)| types.contains(&event_type))
    }

    /// What it names that `logs` do not hold: a source log that is not among them, or an
    /// event type its log does not declare; one line each (none: every name is real).
    pub fn unknown_in(&self, logs: &[Log]) -> Vec<String> {
        let mut unknown = Vec::new();
        for (module, types) in self.sources {
            match logs.iter().find(|log| log.module == *module) {
                None => unknown.push(format!("{}: no log {module}", self.subscriber)),
                Some(log) => unknown.extend(
                    types
                        .iter()
                        .filter(|t| log.contract(t).is_none())
                        .map(|t| format!("{}: the {module} log has no {t}", self.subscriber)),
                ),
            }
        }
        unknown
    }
}

/// A schema's shape: what a payload must look like, without the words about it
/// (`description`, `examples`, `title`), and with `required` in one order, so that a
/// reworded doc comment or reordered fields are not a change of shape. The keys of
/// `properties` (and of other maps of schemas) are field names, kept whatever they are.
#[cfg(any(test, feature = "golden"))]
pub fn shape(schema: Value) -> Value {
    let Value::Object(map) = schema else {
        return match schema {
            Value::Array(items) => Value::Array(items.into_iter().map(shape).collect()),
            other => other,
        };
    };
    let shaped = map
        .into_iter()
        .filter(|(key, _)| !matches!(key.as_str(), "description" | "examples" | "title"))
        .map(|(key, value)| {
            let value = match (key.as_str(), value) {
                ("required", Value::Array(mut names)) => {
                    names.sort_by_key(|name| name.to_string());
                    Value::Array(names)
                }
                // A map of name to schema: every name is kept, every schema shaped.
                (
                    "properties" | "patternProperties" | "$defs" | "definitions",
                    Value::Object(m),
                ) => Value::Object(m.into_iter().map(|(k, v)| (k, shape(v))).collect()),
                (_, value) => shape(value),
            };
            (key, value)
        })
        .collect();
    Value::Object(shaped)
}

/// The golden test of `log` against `<dir>/<event_type>.v<N>.json`, one file per event
/// type and version: `{"schema_version", "schemas", "sample"}`, where `schemas` is the
/// [`shape`] of the payload's schema and those it refers to.
///
/// - The file of the current version must hold exactly the schemas and the sample the code
///   has now: a change of shape without a `schema_version` bump fails here.
/// - Every version from 1 up must have its file, and each older file's sample must still be
///   read by the current type ([`Payload::upcast`]): the subscribers accept every version
///   still in a log.
/// - A file for a type or version the code does not know fails too.
///
/// With `GOLDEN=write` in the environment, the missing file of a current version is
/// written (never one that exists). Returns every failure, one per line. Behind the
/// `golden` feature: for tests only.
#[cfg(any(test, feature = "golden"))]
pub fn check_golden(log: &Log, dir: &std::path::Path) -> Result<(), String> {
    use serde_json::json;
    let write = std::env::var("GOLDEN").is_ok_and(|v| v == "write");
    let mut failures = Vec::new();
    for contract in log.events {
        let current = json!({
            "schema_version": contract.schema_version,
            "schemas": shape(contract.schema_json()),
            "sample": (contract.sample)(),
        });
        for version in 1..=contract.schema_version {
            let path = dir.join(format!("{}.v{version}.json", contract.event_type));
            let golden = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(_) if write && version == contract.schema_version => {
                    let text = serde_json::to_string_pretty(&current).expect("JSON") + "\n";
                    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                    std::fs::write(&path, &text).map_err(|e| e.to_string())?;
                    text
                }
                Err(_) => {
                    failures.push(format!(
                        "{}: missing (GOLDEN=write writes the current version's)",
                        path.display()
                    ));
                    continue;
                }
            };
            let golden: Value = match serde_json::from_str(&golden) {
                Ok(golden) => golden,
                Err(e) => {
                    failures.push(format!("{}: not JSON: {e}", path.display()));
                    continue;
                }
            };
            if version == contract.schema_version {
                if golden != current {
                    failures.push(format!(
                        "{}: the payload of {} changed (schemas or sample) but its \
                         schema_version is still {version}: bump Payload::SCHEMA_VERSION, \
                         upcast from {version}, and write the new version's file (if only \
                         the sample's values changed, delete this file and write it again)",
                        path.display(),
                        contract.event_type
                    ));
                }
            } else if let Err(e) = (contract.accepts)(version, golden["sample"].clone()) {
                failures.push(format!(
                    "{}: the sample of version {version} no longer reads as {} version {}: {e:#}",
                    path.display(),
                    contract.event_type,
                    contract.schema_version
                ));
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let known = log.events.iter().any(|c| {
                (1..=c.schema_version).any(|v| name == format!("{}.v{v}.json", c.event_type))
            });
            if !known {
                failures.push(format!("{name}: no such event type or version in the code"));
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    struct Happened {
        n: i64,
    }

    impl Payload for Happened {
        fn sample() -> Self {
            Happened { n: 7 }
        }
    }

    /// The same event type, once its shape changed: `n` became `count`, version 2.
    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    #[schema(as = Happened)]
    struct Renamed {
        count: i64,
    }

    impl Payload for Renamed {
        const SCHEMA_VERSION: i32 = 2;
        fn upcast(_: i32, payload: Value) -> anyhow::Result<Value> {
            Ok(json!({"count": payload["n"]}))
        }
        fn sample() -> Self {
            Renamed { count: 7 }
        }
    }

    /// Renamed without a bump.
    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    #[schema(as = Happened)]
    struct Unbumped {
        count: i64,
    }

    impl Payload for Unbumped {
        fn sample() -> Self {
            Unbumped { count: 7 }
        }
    }

    /// Renamed with a bump, but no upcaster.
    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    #[schema(as = Happened)]
    struct NoUpcaster {
        count: i64,
    }

    impl Payload for NoUpcaster {
        const SCHEMA_VERSION: i32 = 2;
        fn sample() -> Self {
            NoUpcaster { count: 7 }
        }
    }

    fn log(contract: Contract) -> Log {
        Log {
            module: "tests",
            events: Box::leak(Box::new([contract])),
        }
    }

    fn golden_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "emporium-golden-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The golden file `check_golden` would write for `contract`.
    fn write_golden(dir: &Path, contract: &Contract) {
        let golden = json!({
            "schema_version": contract.schema_version,
            "schemas": shape(contract.schema_json()),
            "sample": (contract.sample)(),
        });
        let path = dir.join(format!("t.v{}.json", contract.schema_version));
        std::fs::write(path, golden.to_string()).unwrap();
    }

    #[test]
    fn a_change_of_shape_needs_a_bump_and_an_upcaster() {
        let v1 = Contract::of::<Happened>("t", "t");
        let dir = golden_dir("shape");
        write_golden(&dir, &v1);
        assert_eq!(check_golden(&log(v1), &dir), Ok(()));

        let unbumped = check_golden(&log(Contract::of::<Unbumped>("t", "t")), &dir).unwrap_err();
        assert!(
            unbumped.contains("changed") && unbumped.contains("still 1"),
            "{unbumped}"
        );

        let v2 = Contract::of::<Renamed>("t", "t");
        let missing = check_golden(&log(v2), &dir).unwrap_err();
        assert!(missing.contains("t.v2.json: missing"), "{missing}");
        write_golden(&dir, &v2);
        assert_eq!(check_golden(&log(v2), &dir), Ok(()));

        let stuck = check_golden(&log(Contract::of::<NoUpcaster>("t", "t")), &dir).unwrap_err();
        assert!(
            stuck.contains("t.v1.json: the sample of version 1 no longer reads"),
            "{stuck}"
        );

        std::fs::write(dir.join("t.v3.json"), "{}").unwrap();
        let unknown = check_golden(&log(v2), &dir).unwrap_err();
        assert!(
            unknown.contains("t.v3.json: no such event type or version"),
            "{unknown}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn words_and_field_order_are_not_shape_but_field_names_are() {
        let a = json!({"description": "x", "properties": {"b": {"title": "t"}}, "required": ["b", "a"]});
        let b = json!({"properties": {"b": {"examples": [1]}}, "required": ["a", "b"]});
        assert_eq!(shape(a), shape(b));
        // Fields called like the words: each is kept, and its type is shape.
        let field =
            |kind| json!({"properties": {"description": {"type": kind}, "title": {"type": kind}}});
        assert_eq!(shape(field("string")), field("string"));
        assert_ne!(shape(field("string")), shape(field("integer")));
    }

    #[test]
    fn a_subscriber_names_only_logs_and_types_that_exist() {
        let logs = [log(Contract::of::<Happened>("t", "t"))];
        let subscribes = |sources| Subscribes {
            subscriber: "s",
            summary: "",
            sources,
        };
        assert!(
            subscribes(&[("tests", &["t"])])
                .unknown_in(&logs)
                .is_empty()
        );
        assert_eq!(
            subscribes(&[("tests", &["u"]), ("other", &["t"])]).unknown_in(&logs),
            ["s: the tests log has no u", "s: no log other"]
        );
    }

    #[test]
    fn payloads_read_at_their_version_or_through_the_upcaster_only() {
        assert_eq!(Renamed::read(1, json!({"n": 3})).unwrap().count, 3);
        assert_eq!(Renamed::read(2, json!({"count": 4})).unwrap().count, 4);
        let newer = Renamed::read(3, json!({"count": 4}))
            .map(|_| ())
            .unwrap_err();
        assert!(newer.to_string().contains("newer"), "{newer}");
        let none = NoUpcaster::read(1, json!({"n": 3}))
            .map(|_| ())
            .unwrap_err();
        assert!(none.to_string().contains("no upcaster"), "{none}");
    }
}
