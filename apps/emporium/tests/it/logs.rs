//! The JSON log line, as `emporium serve` writes it (`LOG_FORMAT=json`): one flat object
//! per line, each key once, the request's id and trace on every line of a request.

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Value, json};

use crate::binary::{serve_logging, stop_and_read_apart};

/// Every line of `stdout` as an object, after checking that it is one JSON object whose
/// keys are unique (serde_json's `Value` would keep the last of two and hide the repeat)
/// and that it has the top-level keys every line has.
fn parse_lines(stdout: &str) -> Vec<Value> {
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
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| {
            let mut de = serde_json::Deserializer::from_str(line);
            let keys = (&mut de)
                .deserialize_map(Keys)
                .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
            de.end()
                .unwrap_or_else(|e| panic!("more than one object ({e}): {line}"));
            let mut unique = keys.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), keys.len(), "a repeated key in {line}");
            let value: Value = serde_json::from_str(line).unwrap();
            let timestamp = value["timestamp"].as_str().unwrap_or_default();
            assert!(
                chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
                "no RFC 3339 timestamp: {line}"
            );
            assert!(
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                    .contains(&value["level"].as_str().unwrap_or_default()),
                "no level: {line}"
            );
            assert!(value["message"].is_string(), "no message: {line}");
            for nested in ["fields", "span", "spans"] {
                assert!(
                    !value[nested].is_object() && !value[nested].is_array(),
                    "nested {nested}: {line}"
                );
            }
            value
        })
        .collect();
    assert!(!lines.is_empty(), "no log lines");
    lines
}

fn request_id(headers: &reqwest::header::HeaderMap) -> String {
    headers["x-request-id"].to_str().unwrap().to_owned()
}

/// A request that logs in a module, one with a `traceparent`, and one that fails
/// unexpectedly (a table gone behind the server's back: `500`): every line of each carries
/// the id the answer's `X-Request-Id` gave, at the top level (and the trace id where one
/// came in), the error's line included; no line is a span's close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_is_one_flat_object_and_a_request_s_lines_carry_its_id() {
    let db = crate::database().await;
    let (served, http) = serve_logging(&db, &[]).await;
    let registered = http
        .post(
            "/users",
            json!({"email": "lines@example.com", "name": "Lines", "password": crate::PASSWORD}),
        )
        .await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let login = http
        .request("POST", "/auth/token")
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&json!({"grant_type": "password", "email": "lines@example.com", "password": crate::PASSWORD}))
        .send()
        .await
        .unwrap();
    let login = (login.status().as_u16(), login.headers().clone());
    {
        use diesel_async::RunQueryDsl;
        diesel::sql_query("ALTER TABLE products.products RENAME TO products_gone")
            .execute(&mut db.connect().await)
            .await
            .unwrap();
    }
    let failed = http.get("/products").await;
    // Stopped before any assertion, so that a failing one leaves no server behind.
    let (stdout, _) = stop_and_read_apart(served).await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    assert_eq!(login.0, 200);
    failed.assert_problem(500, "internal_error");

    let lines = parse_lines(&stdout);
    assert!(
        !lines.iter().any(|l| l["message"] == "close"),
        "span-close lines only with LOG_SPANS"
    );
    let of = |id: &str| -> Vec<&Value> { lines.iter().filter(|l| l["request_id"] == id).collect() };
    let cases = [
        (request_id(&registered.headers), "user registered", "INFO"),
        (request_id(&login.1), "logged in", "INFO"),
        (request_id(&failed.headers), "unexpected error", "ERROR"),
    ];
    for (id, message, level) in &cases {
        let lines = of(id);
        let request = lines.iter().find(|l| l["message"] == "request");
        assert!(
            request.is_some_and(|l| l["span"] == "request"),
            "{id}: no request line in {lines:#?}"
        );
        let logged = lines.iter().find(|l| l["message"] == *message);
        assert!(
            logged.is_some_and(|l| l["level"] == *level),
            "{id}: no {level} {message:?} line in {lines:#?}"
        );
    }
    // Found by what they say, not by their id: every such line is its request's.
    for (id, message, _) in &cases {
        for line in lines.iter().filter(|l| l["message"] == *message) {
            assert_eq!(&line["request_id"], id, "{line}");
        }
    }
    let traced = of(&cases[1].0);
    assert!(traced.iter().all(|l| l["trace_id"] == trace), "{traced:#?}");
    let untraced = of(&cases[0].0);
    assert!(
        untraced.iter().all(|l| l.get("trace_id").is_none()),
        "{untraced:#?}"
    );
    let error = of(&cases[2].0)
        .into_iter()
        .find(|l| l["message"] == "unexpected error")
        .unwrap();
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("products")),
        "the cause chain is in the line: {error}"
    );
}
