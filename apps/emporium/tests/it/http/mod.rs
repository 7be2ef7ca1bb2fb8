//! HTTP behaviour of the whole app, route by route: methods (`HEAD`, `OPTIONS`, `405` with
//! `Allow`), W3C trace context in the logs and plain problem details here; compression in
//! `encoding.rs`, conditional reads (`ETag`, `If-None-Match`, `Cache-Control`) in
//! `conditional.rs`, CORS in `cors.rs`.

mod conditional;
mod cors;
mod encoding;

use std::collections::BTreeSet;

use serde_json::json;

use crate::openapi::contract::{concrete, operations, registered};
use crate::spawn_app;

/// Every registered path with the methods it serves, `HEAD` and `OPTIONS` added: what
/// `Allow` must say.
fn allowed() -> Vec<(String, BTreeSet<String>)> {
    let mut paths: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for (method, path) in registered() {
        let methods = paths.entry(path).or_default();
        if method == "GET" {
            methods.insert("HEAD".to_owned());
        }
        methods.insert(method);
        methods.insert("OPTIONS".to_owned());
    }
    paths.into_iter().collect()
}

fn allow_header(answer: &kernel::testing::Answer) -> BTreeSet<String> {
    answer
        .header("allow")
        .unwrap_or_default()
        .split(',')
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .collect()
}

/// `HEAD` answers on every `GET` route what `GET` answers, without the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_every_get_route_as_get_does_without_a_body() {
    let app = spawn_app().await;
    let product = app.product("Lamp", "3.00", 1).await;
    let gets: Vec<String> = registered()
        .into_iter()
        .filter(|(method, _)| method == "GET")
        .map(|(_, path)| concrete(&path))
        .chain([format!("/products/{product}"), "/health/live".to_owned()])
        .collect();
    for path in gets {
        let get = app.http.request("GET", &path).send().await.unwrap();
        let (get_status, get_type) = (get.status(), get.headers().get("content-type").cloned());
        let get_length = get.bytes().await.unwrap().len();
        let head = app.http.request("HEAD", &path).send().await.unwrap();
        assert_eq!(head.status(), get_status, "HEAD {path}");
        assert_eq!(
            head.headers().get("content-type"),
            get_type.as_ref(),
            "HEAD {path}"
        );
        let length = head.headers().get("content-length").cloned();
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {path} sent a body"
        );
        // (The projections' lag and the metrics move between two requests.)
        let stable = !matches!(path.as_str(), "/admin/projections" | "/metrics");
        if get_status.as_u16() == 200 && stable {
            assert_eq!(
                length.and_then(|l| l.to_str().ok()?.parse::<usize>().ok()),
                Some(get_length),
                "HEAD {path}: Content-Length is the GET body's"
            );
        }
    }
}

/// `OPTIONS` on every path answers `204` with `Allow` naming the path's methods, `HEAD` and
/// `OPTIONS` among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_lists_the_methods_of_every_path() {
    let app = spawn_app().await;
    for (path, methods) in allowed() {
        let answer = app
            .http
            .raw("OPTIONS", &concrete(&path), None, vec![])
            .await;
        assert_eq!(answer.status, 204, "OPTIONS {path}: {:#}", answer.body);
        assert_eq!(allow_header(&answer), methods, "OPTIONS {path}");
    }
}

/// A method a path does not have, `TRACE`, `CONNECT` and made-up ones included, is `405`
/// problem+json with `Allow`; on an unknown path it stays `404`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_are_405_with_allow_and_a_problem() {
    let app = spawn_app().await;
    let documented = operations(&crate::openapi::contract::document());
    for (path, methods) in allowed() {
        for method in [
            "TRACE",
            "DELETE",
            "PUT",
            "POST",
            "PATCH",
            "GET",
            "FROBNICATE",
        ] {
            if methods.contains(method) {
                continue;
            }
            assert!(!documented.contains(&(method.to_owned(), path.clone())));
            let answer = app.http.raw(method, &concrete(&path), None, vec![]).await;
            answer.assert_problem(405, "method_not_allowed");
            assert_eq!(allow_header(&answer), methods, "{method} {path}");
        }
    }
    // CONNECT in origin form, which no HTTP client library sends.
    let address = app.http.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        b"CONNECT /health/live HTTP/1.1\r\nHost: emporium\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = String::new();
    let read = tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer);
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .expect("an answer to CONNECT")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(answer.contains("allow: GET, HEAD, OPTIONS"), "{answer}");
    assert!(answer.contains("method_not_allowed"), "{answer}");
    for method in ["TRACE", "FROBNICATE", "GET"] {
        app.http
            .raw(method, "/nowhere", None, vec![])
            .await
            .assert_problem(404, "route_not_found");
    }
}

/// The `422` of a token the payment gateway does not take names the token once, plainly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unaccepted_payment_token_is_named_once() {
    let app = spawn_app().await;
    let user = app.user("token@example.com").await;
    let product = app.product("Mug", "9.90", 5).await;
    let order = app.placed(&user, &[(&product, 1)]).await;
    let answer = app
        .command(&order, "confirm", json!({"payment_token": "tok_nope"}))
        .await;
    let body = answer.assert_problem(422, "invalid_payment_token");
    assert_eq!(
        body["detail"], "the payment gateway did not accept payment token \"tok_nope\"",
        "{body:#}"
    );
    assert_eq!(
        body["errors"],
        json!([{"field": "payment_token", "message": "not accepted by the payment gateway: unknown token"}])
    );
}

pub(super) async fn app_with(
    change: impl FnOnce(&mut emporium::Config) + Send + 'static,
) -> crate::TestApp {
    let config = move |url: &str| {
        let mut config = emporium::Config::for_database(url);
        change(&mut config);
        config
    };
    crate::spawn_with(crate::database().await, config, emporium::Hooks::default()).await
}

/// `GET` with these headers: status, headers and the raw body bytes.
pub(super) async fn fetch(
    http: &kernel::testing::Http,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = http.request(method, path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.bytes().await.unwrap().to_vec())
}

pub(super) fn header<'h>(headers: &'h reqwest::header::HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A valid `traceparent` is on every log line of its request, beside the request id (the
/// request's own line and the module's); a malformed one is ignored, the request served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_is_carried_into_the_logs_and_a_malformed_one_ignored() {
    let db = crate::database().await;
    // With span-close lines, so that the module's span has a line of its own.
    let (served, http) = crate::binary::serve_logging(&db, &[("LOG_SPANS", "1")]).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let product = format!("/products/{}", crate::openapi::contract::NOBODY);
    let traced = format!("00-{trace}-{parent}-01");
    let mut answers = Vec::new();
    for (request_id, traceparent) in [
        ("traced-request", traced.as_str()),
        ("untraced-request", "00-garbage-01"),
    ] {
        let (status, headers, _) = fetch(
            &http,
            "GET",
            &product,
            &[("x-request-id", request_id), ("traceparent", traceparent)],
        )
        .await;
        answers.push((request_id, status, headers));
    }
    // Stopped before any assertion, so that a failing one leaves no server behind.
    let logs = crate::binary::stop_and_read(served).await;
    for (request_id, status, headers) in answers {
        assert_eq!(status, 404, "{request_id}: served as any other");
        assert_eq!(header(&headers, "x-request-id"), Some(request_id));
        assert_eq!(header(&headers, "traceparent"), None, "not echoed");
    }
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let of = |id: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|l| l["request_id"] == id).collect()
    };
    let traced = of("traced-request");
    let names: BTreeSet<&str> = traced.iter().filter_map(|l| l["span"].as_str()).collect();
    assert!(
        names.contains("request") && names.contains("products.get"),
        "{names:?}"
    );
    for line in &traced {
        assert_eq!(
            (&line["trace_id"], &line["parent_id"]),
            (&json!(trace), &json!(parent)),
            "{line}"
        );
    }
    let untraced = of("untraced-request");
    assert!(!untraced.is_empty());
    assert!(
        untraced.iter().all(|l| l.get("trace_id").is_none()),
        "{untraced:?}"
    );
}
