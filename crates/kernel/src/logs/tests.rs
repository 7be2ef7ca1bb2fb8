use std::io;
use std::sync::{Arc, Mutex};

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Value, json};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::{FmtSpan, JsonFields};

use super::FlatJson;

/// What the subscriber wrote, shared with the test.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

/// The lines `work` logs, with span-close lines when `spans`.
fn lines(spans: FmtSpan, work: impl FnOnce()) -> Vec<String> {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_span_events(spans)
        .fmt_fields(JsonFields::new())
        .event_format(FlatJson)
        .with_writer(buffer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, work);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    text.lines().map(str::to_owned).collect()
}

/// The top-level keys of a JSON object, in order, repeats included (serde_json's `Value`
/// would keep the last of two and hide the repeat).
fn keys(line: &str) -> Vec<String> {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some((key, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                keys.push(key);
            }
            Ok(keys)
        }
    }
    let mut de = serde_json::Deserializer::from_str(line);
    let keys = (&mut de).deserialize_map(Keys).expect("one JSON object");
    de.end().expect("nothing after the object");
    keys
}

fn assert_unique(line: &str) -> Value {
    let keys = keys(line);
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "a repeated key in {line}");
    serde_json::from_str(line).unwrap()
}

#[test]
fn span_fields_are_on_the_top_level_of_every_line_inside_the_span() {
    let lines = lines(FmtSpan::NONE, || {
        let request = tracing::info_span!(
            "request",
            request_id = "req-1",
            trace_id = tracing::field::Empty,
            method = "GET"
        );
        request.record("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736");
        let _request = request.enter();
        tracing::info!(status = 200u64, "outer");
        let module = tracing::info_span!("users.get");
        let _module = module.enter();
        tracing::error!(error = "boom: cause", "unexpected error");
    });
    assert_eq!(lines.len(), 2, "{lines:?}");
    let outer = assert_unique(&lines[0]);
    let inner = assert_unique(&lines[1]);
    assert_eq!(keys(&lines[0])[..3], ["timestamp", "level", "message"]);
    for (line, message, level, span) in [
        (&outer, "outer", "INFO", "request"),
        (&inner, "unexpected error", "ERROR", "users.get"),
    ] {
        assert_eq!(line["message"], message, "{line}");
        assert_eq!(line["level"], level, "{line}");
        assert_eq!(line["span"], span, "{line}");
        assert_eq!(line["request_id"], "req-1", "{line}");
        assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(line["method"], "GET");
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "{timestamp}"
        );
        assert!(line.get("fields").is_none() && line.get("spans").is_none());
    }
    assert_eq!(outer["status"], 200);
    assert_eq!(inner["error"], "boom: cause");
}

#[test]
fn every_key_is_written_once_the_innermost_value_winning() {
    let lines = lines(FmtSpan::NONE, || {
        let outer = tracing::info_span!("outer", id = 1, only_outer = true);
        let _outer = outer.enter();
        let inner = tracing::info_span!("inner", id = 2, name = "place", message = "span's");
        let _inner = inner.enter();
        tracing::info!(id = 3, level = "mine", target = "mine too", "event");
        tracing::info!("no fields");
    });
    let event = assert_unique(&lines[0]);
    assert_eq!(
        (&event["id"], &event["name"], &event["only_outer"]),
        (&json!(3), &json!("place"), &json!(true))
    );
    assert_eq!(event["message"], "event", "the event's own message wins");
    assert_eq!(event["level"], "INFO");
    assert_eq!(event["fields.level"], "mine");
    assert_eq!(event["fields.target"], "mine too");
    let plain = assert_unique(&lines[1]);
    assert_eq!(
        (&plain["id"], &plain["message"]),
        (&json!(2), &json!("no fields"))
    );
}

#[test]
fn span_close_lines_are_flat_too_and_carry_the_span_name_and_time() {
    let lines = lines(FmtSpan::CLOSE, || {
        let request = tracing::info_span!("request", request_id = "req-2");
        let _request = request.enter();
        drop(tracing::info_span!("products.get").entered());
    });
    let closes: Vec<Value> = lines.iter().map(|l| assert_unique(l)).collect();
    let module = closes
        .iter()
        .find(|l| l["span"] == "products.get")
        .unwrap_or_else(|| panic!("no close line of products.get: {lines:?}"));
    assert_eq!(module["message"], "close");
    assert_eq!(module["request_id"], "req-2");
    assert!(module["time.busy"].is_string(), "{module}");
}

#[test]
fn without_a_span_a_line_has_only_its_own_keys_and_fields() {
    let lines = lines(FmtSpan::CLOSE, || {
        tracing::warn!(kid = "k1", "new signing key")
    });
    let line = assert_unique(&lines[0]);
    let keys = keys(&lines[0]);
    assert_eq!(
        keys,
        ["timestamp", "level", "message", "target", "kid"],
        "{line}"
    );
    assert_eq!(line["target"], module_path!());
}
