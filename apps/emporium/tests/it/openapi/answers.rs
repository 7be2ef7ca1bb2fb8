//! Every route driven to each answer it documents, one test per part of the API (users
//! and auth are in `identity.rs`; products, order commands, order queries, payments, operations), each answer validated
//! against the document: status, content type, headers and body schema. Each test ends
//! with its database dropped from under the app (every route that needs it answers `503`
//! with `Retry-After`) and asserts that no documented answer of its part went unseen.
//! What a test needs from another part (a user, a product, an order in some state) it
//! makes with plain requests, outside the contract.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::contract::{ADMIN_TOKEN, Client, NOBODY, Part, admin_app, drop_database, id, send};
use crate::{TestApp, spawn_app};

pub(super) async fn app() -> TestApp {
    admin_app(crate::database().await).await
}

/// Each of `requests` refused: `401 unauthenticated` without a token and `403 forbidden`
/// with the admin token, which is no user and holds no role (it opens only `/admin` and
/// role grants). Who else is refused where is `access.rs`'s matrix.
async fn refused(c: &mut Client<'_>, requests: &[(&str, String, Option<Value>)]) {
    let anonymous = c.app.http.anonymous();
    let admin_token = anonymous.with_bearer(ADMIN_TOKEN);
    for (method, path, body) in requests {
        let answer = c.call_as(&anonymous, method, path, body.clone()).await;
        answer.assert_problem(401, "unauthenticated");
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
        c.call_as(&admin_token, method, path, body.clone())
            .await
            .assert_problem(403, "forbidden");
    }
}

/// Drops the app's database, then asserts that each request answers `503
/// service_unavailable` (with `Retry-After`, as the document declares).
async fn unavailable(c: &mut Client<'_>, requests: Vec<(&str, String, Option<Value>)>) {
    drop_database(c.app).await;
    for (method, path, body) in requests {
        // As the app's staff member: tokens are verified without the database.
        let answer = c.call(method, &path, body).await;
        answer.assert_problem(503, "service_unavailable");
    }
}

fn order_of(user: &str, product: &str, quantity: i64) -> Value {
    json!({"user_id": user, "items": [{"product_id": product, "quantity": quantity}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_answer_as_documented() {
    let app = app().await;
    let mut c = Client::new(&app, Part::Products);
    let mug = c
        .call(
            "POST",
            "/products",
            Some(json!({"name": "Mug", "description": "Stoneware", "price": "9.90", "stock": 5})),
        )
        .await;
    assert_eq!(mug.status, 201, "{:#}", mug.body);
    let mug_id = id(&mug, "id");
    let kettle = c
        .call(
            "POST",
            "/products",
            Some(json!({"name": "Kettle", "price": 24.5, "stock": 1})),
        )
        .await;
    assert_eq!(kettle.body["price"], "24.50", "a number in, a string out");
    c.call(
        "POST",
        "/products",
        Some(json!({"name": "Dust", "price": "0.001"})),
    )
    .await
    .assert_problem(422, "validation_failed");
    c.bad_bodies("POST", "/products").await;
    let mug_path = format!("/products/{mug_id}");
    c.revalidate(&mug_path, &[]).await;
    c.call("GET", "/products/12", None)
        .await
        .assert_problem(400, "invalid_path");
    c.call("GET", &format!("/products/{NOBODY}"), None)
        .await
        .assert_problem(404, "product_not_found");
    let page = c.revalidate("/products?page=1&page_size=10", &[]).await;
    assert_eq!(page.body["total"], 2);
    c.call("GET", "/products?page=0", None)
        .await
        .assert_problem(400, "invalid_query");
    let repriced = c
        .call("PATCH", &mug_path, Some(json!({"price": 8.5})))
        .await;
    assert_eq!(repriced.body["price"], "8.50");
    c.call("PATCH", &mug_path, Some(json!({"price": "-1"})))
        .await
        .assert_problem(422, "validation_failed");
    c.call("PATCH", &format!("/products/{NOBODY}"), Some(json!({})))
        .await
        .assert_problem(404, "product_not_found");
    c.bad_bodies("PATCH", &mug_path).await;
    let restock = format!("{mug_path}/restock");
    let restocked = c.call("POST", &restock, Some(json!({"quantity": 5}))).await;
    assert_eq!(restocked.body["stock"], 10);
    c.call("POST", &restock, Some(json!({"quantity": 1_000_000_000})))
        .await
        .assert_problem(409, "stock_limit");
    c.call("POST", &restock, Some(json!({"quantity": 0})))
        .await
        .assert_problem(422, "validation_failed");
    c.call(
        "POST",
        &format!("/products/{NOBODY}/restock"),
        Some(json!({"quantity": 1})),
    )
    .await
    .assert_problem(404, "product_not_found");
    c.bad_bodies("POST", &restock).await;

    let writes = vec![
        (
            "POST",
            "/products".to_owned(),
            Some(json!({"name": "Cup", "price": "1.00"})),
        ),
        ("PATCH", mug_path.clone(), Some(json!({"name": "Cup"}))),
        ("POST", restock.clone(), Some(json!({"quantity": 1}))),
    ];
    refused(&mut c, &writes).await;
    let mut requests = writes;
    requests.push(("GET", mug_path.clone(), None));
    requests.push(("GET", "/products".to_owned(), None));
    unavailable(&mut c, requests).await;
    c.assert_all_seen();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_commands_answer_as_documented() {
    let app = app().await;
    let user = app.user("ada@example.com").await;
    let mug_id = app.product("Mug", "8.50", 10).await;
    let kettle_id = app.product("Kettle", "24.50", 1).await;
    let mut c = Client::new(&app, Part::OrderCommands);

    let lines = |product: &str, quantity: i64| order_of(&user, product, quantity);
    let key = [("idempotency-key", "openapi-1")];
    let placed = c
        .call_with("POST", "/commands/orders", Some(lines(&mug_id, 2)), &key)
        .await;
    assert_eq!(placed.status, 202, "{:#}", placed.body);
    let order = id(&placed, "order_id");
    c.call_with("POST", "/commands/orders", Some(lines(&mug_id, 3)), &key)
        .await
        .assert_problem(409, "idempotency_key_reused");
    let long_key = "k".repeat(256);
    c.call_with(
        "POST",
        "/commands/orders",
        Some(lines(&mug_id, 1)),
        &[("idempotency-key", &long_key)],
    )
    .await
    .assert_problem(400, "invalid_header");
    c.call("POST", "/commands/orders", Some(lines(&kettle_id, 5)))
        .await
        .assert_problem(409, "insufficient_stock");
    c.call("POST", "/commands/orders", Some(lines(NOBODY, 1)))
        .await
        .assert_problem(422, "unknown_product");
    c.bad_bodies("POST", "/commands/orders").await;
    let second = c
        .call("POST", "/commands/orders", Some(lines(&kettle_id, 1)))
        .await;
    let pending = id(&second, "order_id");

    let confirm = format!("/commands/orders/{order}/confirm");
    let token = |t: &str| Some(json!({"payment_token": t}));
    c.call_with(
        "POST",
        &confirm,
        token("tok_visa"),
        &[("if-match", "\"7\"")],
    )
    .await
    .assert_problem(412, "version_mismatch");
    c.call_with(
        "POST",
        &confirm,
        token("tok_visa"),
        &[("if-match", "seven")],
    )
    .await
    .assert_problem(400, "invalid_header");
    c.call("POST", &confirm, token("tok_declined"))
        .await
        .assert_problem(402, "payment_declined");
    c.call("POST", &confirm, token("tok_gateway_error"))
        .await
        .assert_problem(502, "payment_gateway_error");
    c.call("POST", &confirm, token("tok_bogus"))
        .await
        .assert_problem(422, "invalid_payment_token");
    let slow = c
        .call("POST", "/commands/orders", Some(lines(&mug_id, 1)))
        .await;
    let slow = format!("/commands/orders/{}/confirm", id(&slow, "order_id"));
    c.call("POST", &slow, token("tok_timeout_failed"))
        .await
        .assert_problem(504, "payment_pending");
    c.call(
        "POST",
        &format!("/commands/orders/{NOBODY}/confirm"),
        token("tok_visa"),
    )
    .await
    .assert_problem(404, "order_not_found");
    c.bad_bodies("POST", &confirm).await;
    let confirmed = c
        .call_with(
            "POST",
            &confirm,
            token("tok_visa"),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(
        (confirmed.status, confirmed.header("etag")),
        (202, Some("\"2\""))
    );
    c.call("POST", &confirm, token("tok_visa"))
        .await
        .assert_problem(409, "invalid_transition");

    for (command, from) in [("ship", "\"2\""), ("deliver", "\"3\"")] {
        let path = format!("/commands/orders/{order}/{command}");
        c.call_with("POST", &path, None, &[("if-match", "\"1\"")])
            .await
            .assert_problem(412, "version_mismatch");
        c.call_with("POST", &path, None, &[("if-match", "one")])
            .await
            .assert_problem(400, "invalid_header");
        c.call(
            "POST",
            &format!("/commands/orders/{NOBODY}/{command}"),
            None,
        )
        .await
        .assert_problem(404, "order_not_found");
        c.call(
            "POST",
            &format!("/commands/orders/{pending}/{command}"),
            None,
        )
        .await
        .assert_problem(409, "invalid_transition");
        let done = c
            .call_with("POST", &path, None, &[("if-match", from)])
            .await;
        assert_eq!(done.status, 202, "{command}: {:#}", done.body);
    }

    let reason = Some(json!({"reason": "changed my mind"}));
    let cancel_pending = format!("/commands/orders/{pending}/cancel");
    c.call_with(
        "POST",
        &cancel_pending,
        reason.clone(),
        &[("if-match", "\"5\"")],
    )
    .await
    .assert_problem(412, "version_mismatch");
    c.call("POST", &cancel_pending, Some(json!({"reason": ""})))
        .await
        .assert_problem(422, "validation_failed");
    c.call(
        "POST",
        &format!("/commands/orders/{NOBODY}/cancel"),
        reason.clone(),
    )
    .await
    .assert_problem(404, "order_not_found");
    c.bad_bodies("POST", &cancel_pending).await;
    assert_eq!(
        c.call("POST", &cancel_pending, reason.clone()).await.status,
        202
    );
    c.call(
        "POST",
        &format!("/commands/orders/{order}/cancel"),
        reason.clone(),
    )
    .await
    .assert_problem(409, "invalid_transition");

    let requests = vec![
        (
            "POST",
            "/commands/orders".to_owned(),
            Some(lines(&mug_id, 1)),
        ),
        ("POST", confirm.clone(), token("tok_visa")),
        ("POST", format!("/commands/orders/{order}/ship"), None),
        ("POST", format!("/commands/orders/{order}/deliver"), None),
        ("POST", cancel_pending.clone(), reason.clone()),
    ];
    refused(&mut c, &requests).await;
    unavailable(&mut c, requests).await;
    c.assert_all_seen();
}

/// A delivered order of two mugs at 8.50 (version 4), and its user.
async fn delivered_order(app: &TestApp) -> (String, String) {
    let user = app.user("ada@example.com").await;
    let mug = app.product("Mug", "8.50", 10).await;
    let order = app.placed(&user, &[(&mug, 2)]).await;
    let confirmed = app
        .command(&order, "confirm", json!({"payment_token": "tok_visa"}))
        .await;
    assert_eq!(confirmed.status, 202, "{:#}", confirmed.body);
    for command in ["ship", "deliver"] {
        let done = app.command(&order, command, json!({})).await;
        assert_eq!(done.status, 202, "{command}: {:#}", done.body);
    }
    (user, order)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_queries_answer_as_documented() {
    let app = app().await;
    let (user, order) = delivered_order(&app).await;
    let mut c = Client::new(&app, Part::OrderQueries);

    // Wait for the read model, then read. (`min_version` waits up to 2 s, then answers 404
    // or a stale view; a loaded machine may need longer, so ask again until a deadline.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let view = loop {
        let view = c
            .call(
                "GET",
                &format!("/queries/orders/{order}?min_version=4"),
                None,
            )
            .await;
        if view.status == 200 && view.header("x-read-model-stale").is_none() {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "the read model never reached version 4"
        );
    };
    assert_eq!(
        (view.status, view.body["status"].as_str()),
        (200, Some("delivered")),
        "{:#}",
        view.body
    );
    assert_eq!(view.body["total"], "17.00");
    assert_eq!(view.body["items"][0]["price"], "8.50");
    let stale = c
        .call(
            "GET",
            &format!("/queries/orders/{order}?min_version=99"),
            None,
        )
        .await;
    assert_eq!(stale.header("x-read-model-stale"), Some("true"));
    c.revalidate(&format!("/queries/orders/{order}"), &[]).await;
    c.call("GET", &format!("/queries/orders/{NOBODY}"), None)
        .await
        .assert_problem(404, "order_not_found");
    c.call(
        "GET",
        &format!("/queries/orders/{order}?min_version=-1"),
        None,
    )
    .await
    .assert_problem(400, "invalid_query");
    let list = c
        .call(
            "GET",
            &format!("/queries/orders?user_id={user}&status=delivered&page=1&page_size=5"),
            None,
        )
        .await;
    assert_eq!(list.body["total"], 1, "{:#}", list.body);
    c.call("GET", "/queries/orders?status=lost", None)
        .await
        .assert_problem(400, "invalid_query");

    let requests = vec![
        ("GET", format!("/queries/orders/{order}"), None),
        ("GET", "/queries/orders".to_owned(), None),
    ];
    refused(&mut c, &requests).await;
    unavailable(&mut c, requests).await;
    c.assert_all_seen();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_answer_as_documented() {
    let app = app().await;
    let user = app.user("ada@example.com").await;
    let mug = app.product("Mug", "8.50", 10).await;
    let order = app.placed(&user, &[(&mug, 2)]).await;
    for (token, status) in [("tok_declined", 402), ("tok_visa", 202)] {
        let answer = app
            .command(&order, "confirm", json!({"payment_token": token}))
            .await;
        assert_eq!(answer.status, status, "{token}: {:#}", answer.body);
    }
    let mut c = Client::new(&app, Part::Payments);

    let payments = c
        .call("GET", &format!("/payments?order_id={order}"), None)
        .await;
    let statuses: Vec<&str> = payments.body["payments"]
        .as_array()
        .expect("payments")
        .iter()
        .filter_map(|p| p["status"].as_str())
        .collect();
    assert_eq!(statuses, ["declined", "captured"], "{:#}", payments.body);
    let payment = payments.body["payments"][1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(payments.body["payments"][1]["amount"], "17.00");
    c.revalidate(&format!("/payments/{payment}"), &[]).await;
    c.call("GET", &format!("/payments/{NOBODY}"), None)
        .await
        .assert_problem(404, "payment_not_found");
    c.call("GET", "/payments/nope", None)
        .await
        .assert_problem(400, "invalid_path");
    c.call("GET", "/payments", None)
        .await
        .assert_problem(400, "invalid_query");

    let requests = vec![
        ("GET", format!("/payments?order_id={order}"), None),
        ("GET", format!("/payments/{payment}"), None),
    ];
    refused(&mut c, &requests).await;
    unavailable(&mut c, requests).await;
    c.assert_all_seen();
}

/// Health, metrics, and the admin routes (with, without and without a configured token);
/// the document and its reference page, which are not listed in it, answer as the other
/// conditional reads do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_answer_as_documented() {
    let app = app().await;
    let mut c = Client::new(&app, Part::Operations);
    c.call("GET", "/health/live", None).await;
    c.call("GET", "/health/ready", None).await;
    for path in [
        "/openapi.json",
        "/asyncapi.json",
        "/docs",
        "/docs/",
        "/docs/swagger-ui.css",
    ] {
        let fresh = send(&app, "GET", path, None, &[]).await;
        assert_eq!(fresh.status, 200, "GET {path}");
        let tag = fresh.header("etag").expect("an ETag");
        let again = send(&app, "GET", path, None, &[("if-none-match", tag)]).await;
        assert_eq!(again.status, 304, "GET {path} with If-None-Match: {tag}");
        send(&app, "GET", path, None, &[("if-none-match", "no-quotes")])
            .await
            .assert_problem(400, "invalid_header");
    }
    send(&app, "GET", "/docs/nope.js", None, &[])
        .await
        .assert_problem(404, "docs_file_not_found");

    let metrics = c.call("GET", "/metrics", None).await;
    assert_eq!(metrics.status, 200);
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let admin = [("authorization", bearer.as_str())];
    let status = c.call_with("GET", "/admin/projections", None, &admin).await;
    assert_eq!(status.status, 200, "{:#}", status.body);
    let as_admin = c.call("GET", "/admin/projections", None).await;
    assert_eq!(
        as_admin.status, 200,
        "an admin access token: {:#}",
        as_admin.body
    );
    let rebuild = format!("/admin/projections/{}/rebuild", ::orders_read::PROJECTION);
    let support = app.as_staff(&[kernel::Role::Support]).await;
    for (method, path) in [("GET", "/admin/projections"), ("POST", rebuild.as_str())] {
        c.call_as(&app.http.anonymous(), method, path, None)
            .await
            .assert_problem(401, "unauthenticated");
        c.call_as(&support, method, path, None)
            .await
            .assert_problem(403, "forbidden");
    }
    c.call_with(
        "POST",
        &format!("/admin/projections/{}/rebuild", ::orders::SAGA),
        None,
        &admin,
    )
    .await
    .assert_problem(409, "not_rebuildable");
    c.call_with("POST", "/admin/projections/nope/rebuild", None, &admin)
        .await
        .assert_problem(404, "projection_not_found");
    let started = c.call_with("POST", &rebuild, None, &admin).await;
    assert_eq!(started.status, 202, "{:#}", started.body);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = c.call_with("GET", "/admin/projections", None, &admin).await;
        let rebuilding = status.body["projections"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["status"] == "rebuilding");
        if !rebuilding {
            break;
        }
        assert!(Instant::now() < deadline, "the rebuild never ends");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Without a configured ADMIN_TOKEN, only admin access tokens work.
    let closed = spawn_app().await;
    for (method, path) in [("GET", "/admin/projections"), ("POST", rebuild.as_str())] {
        let answer = send(&closed, method, path, None, &admin).await;
        c.contract.check(method, path, &answer);
        answer.assert_problem(401, "unauthenticated");
    }
    let status = send(&closed, "GET", "/admin/projections", None, &[]).await;
    assert_eq!(status.status, 200, "{:#}", status.body);

    unavailable(
        &mut c,
        vec![
            ("GET", "/health/ready".to_owned(), None),
            ("GET", "/metrics".to_owned(), None),
            ("GET", "/admin/projections".to_owned(), None),
            ("POST", rebuild.clone(), None),
        ],
    )
    .await;
    c.assert_all_seen();
}
