//! The JSON log line: one flat object per event, which standard pipelines (jq, Loki,
//! Elasticsearch, Cloud Logging) read without knowing `tracing`'s nesting.
//!
//! ```json
//! {"timestamp":"2026-05-01T10:00:00.123456Z","level":"INFO","message":"request",
//!  "target":"kernel::http","span":"request","status":200,"elapsed_ms":1.2,
//!  "request_id":"0196…","method":"GET","path":"/products"}
//! ```
//!
//! `timestamp` (RFC 3339, UTC), `level`, `message`, `target` and `span` (the innermost
//! span's name, when the event is in one) come first; then the event's own fields; then
//! the fields of every span the event is in, from the innermost out, so a line logged
//! anywhere inside a request carries the request span's `request_id` (and `trace_id`,
//! `parent_id`) at the top level. Every key appears once: a span field that an inner span
//! or the event already set is left out, and an event field named like one of the line's
//! own keys is written as `fields.<name>`.
//!
//! A hand-written `FormatEvent` rather than a crate: `tracing-subscriber`'s `Json` nests
//! span fields (`span`, `spans`) and repeats `name`; `json-subscriber`'s top-level
//! flattening documents that it may write duplicate keys; `tracing-flat-json` is a young
//! layer of its own that cannot write span-close lines (`LOG_SPANS`). This formatter sits
//! in `tracing-subscriber`'s `fmt` layer, which keeps doing the filtering, the span
//! storage (as [`JsonFields`]), the timestamps and the span events.

use std::fmt;

use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The line's own keys, which no field may take.
const OWN_KEYS: [&str; 5] = ["timestamp", "level", "message", "target", "span"];

/// Formats each event as one flat JSON object on one line (see the module's docs). Use it
/// with [`JsonFields`] as the span field formatter:
/// `tracing_subscriber::fmt().fmt_fields(JsonFields::new()).event_format(FlatJson)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlatJson;

impl<S> FormatEvent<S, JsonFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let mut line = Line::default();
        line.own("timestamp", timestamp);
        line.own("level", event.metadata().level().as_str());
        line.own("message", fields.message.take().unwrap_or_default());
        let target = fields.log_target.take();
        line.own(
            "target",
            target.unwrap_or_else(|| event.metadata().target().to_owned()),
        );
        if let Some(leaf) = ctx.event_scope().and_then(|mut scope| scope.next()) {
            line.own("span", leaf.name());
        }
        for (name, value) in fields.values {
            if OWN_KEYS.contains(&name) {
                line.field(format!("fields.{name}"), value);
            } else {
                line.field(name, value);
            }
        }
        for span in ctx.event_scope().into_iter().flatten() {
            let extensions = span.extensions();
            let Some(stored) = extensions.get::<FormattedFields<JsonFields>>() else {
                continue;
            };
            if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(stored) {
                for (name, value) in map {
                    line.field(name, value);
                }
            }
        }
        let mut out = Vec::with_capacity(512);
        line.write(&mut out).map_err(|_| fmt::Error)?;
        out.push(b'\n');
        writer.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

/// The keys and values of one line, in order, each key once. A line has a dozen keys or so:
/// a linear search beats hashing them.
#[derive(Default)]
struct Line {
    entries: Vec<(std::borrow::Cow<'static, str>, Value)>,
}

impl Line {
    fn own(&mut self, key: &'static str, value: impl Into<Value>) {
        self.entries.push((key.into(), value.into()));
    }

    /// Kept unless the key is taken (by the line, the event or an inner span).
    fn field(&mut self, key: impl Into<std::borrow::Cow<'static, str>>, value: Value) {
        let key = key.into();
        if !self.entries.iter().any(|(taken, _)| *taken == key) {
            self.entries.push((key, value));
        }
    }

    fn write(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        let mut serializer = serde_json::Serializer::new(out);
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (key, value) in &self.entries {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// An event's fields as JSON values; `message` and a `log` record's target apart.
#[derive(Default)]
struct EventFields {
    message: Option<String>,
    log_target: Option<String>,
    values: Vec<(&'static str, Value)>,
}

impl EventFields {
    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => {
                self.message = Some(match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
            }
            "log.target" => self.log_target = value.as_str().map(str::to_owned),
            // The rest of a `log` record's metadata (module path, file, line).
            name if name.starts_with("log.") => {}
            name => self.values.push((name, value)),
        }
    }
}

impl Visit for EventFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value)
            .map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.put(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests;
mod writer;

pub use writer::{LineWriter, LinesGuard, batched};
