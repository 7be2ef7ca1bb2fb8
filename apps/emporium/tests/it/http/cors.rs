//! CORS: off by default; with `CORS_ALLOWED_ORIGINS`, preflights answered and answers
//! readable by the allowed origins only.

use super::{app_with, fetch, header};
use crate::spawn_app;

const SHOP: &str = "https://shop.example";

fn preflight(method: &str, headers: &str) -> Vec<(&'static str, String)> {
    vec![
        ("origin", SHOP.to_owned()),
        ("access-control-request-method", method.to_owned()),
        ("access-control-request-headers", headers.to_owned()),
    ]
}

async fn cors_fetch(
    app: &crate::TestApp,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    fetch(&app.http, method, path, &headers).await
}

/// Off by default: a preflight is an ordinary `OPTIONS` (`204`, `Allow`) and no answer
/// says any origin may read it, so a browser keeps other origins' pages out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_off_by_default() {
    let app = spawn_app().await;
    let (status, headers, _) = cors_fetch(
        &app,
        "OPTIONS",
        "/commands/orders",
        &preflight("POST", "authorization"),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    let (status, headers, _) =
        cors_fetch(&app, "GET", "/products", &[("origin", SHOP.to_owned())]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
}

/// With `CORS_ALLOWED_ORIGINS`, a preflight from an allowed origin is answered with the
/// methods and headers the API takes, and its answers name the origin and expose the
/// headers a client reads; another origin's preflight is a `400` problem, and its plain
/// requests are answered without CORS headers. `*` allows any origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_preflights_of_allowed_origins() {
    let app = app_with(|c| c.cors_allowed_origins = vec![SHOP.to_owned()]).await;
    let asked =
        "authorization, content-type, idempotency-key, if-match, if-none-match, traceparent";
    let (status, headers, _) = cors_fetch(
        &app,
        "OPTIONS",
        "/commands/orders",
        &preflight("POST", asked),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some(SHOP));
    let methods = header(&headers, "access-control-allow-methods").unwrap_or_default();
    for method in ["GET", "HEAD", "POST", "PUT", "PATCH"] {
        assert!(methods.contains(method), "{method} in {methods}");
    }
    let allowed = header(&headers, "access-control-allow-headers").unwrap_or_default();
    for name in asked.split(", ") {
        assert!(allowed.contains(name), "{name} in {allowed}");
    }
    assert_eq!(header(&headers, "access-control-max-age"), Some("7200"));
    assert_eq!(header(&headers, "access-control-allow-credentials"), None);

    let (status, headers, _) =
        cors_fetch(&app, "GET", "/products", &[("origin", SHOP.to_owned())]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some(SHOP));
    let exposed = header(&headers, "access-control-expose-headers").unwrap_or_default();
    for name in [
        "etag",
        "location",
        "retry-after",
        "x-request-id",
        "x-read-model-stale",
    ] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
    assert!(header(&headers, "vary").is_some_and(|v| v.to_lowercase().contains("origin")));

    let mut other = preflight("POST", "authorization");
    other[0].1 = "https://evil.example".to_owned();
    let (status, headers, body) = cors_fetch(&app, "OPTIONS", "/commands/orders", &other).await;
    assert_eq!(status, 400);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/problem+json")
    );
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["code"], "cors_preflight_refused", "{problem:#}");
    let (status, headers, _) = cors_fetch(
        &app,
        "OPTIONS",
        "/commands/orders",
        &preflight("POST", "x-evil"),
    )
    .await;
    assert_eq!(status, 400, "a header the API does not take: {headers:?}");
    let (status, headers, _) = cors_fetch(
        &app,
        "GET",
        "/products",
        &[("origin", "https://evil.example".to_owned())],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "access-control-allow-origin"), None);

    app.stop().await;
    let any = app_with(|c| c.cors_allowed_origins = vec!["*".to_owned()]).await;
    let (_, headers, _) = cors_fetch(
        &any,
        "GET",
        "/products",
        &[("origin", "https://anywhere.example".to_owned())],
    )
    .await;
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
}
