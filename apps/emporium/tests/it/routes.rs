//! Every route of the users and products contract through the assembled app, and the
//! app-wide error behaviour.

use serde_json::json;

use crate::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_answer() {
    let app = spawn_app().await;
    let live = app.http.get("/health/live").await;
    assert_eq!(
        (live.status, live.body["status"].as_str()),
        (200, Some("live"))
    );
    let ready = app.http.get("/health/ready").await;
    assert_eq!(
        (ready.status, ready.body["status"].as_str()),
        (200, Some("ready"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_products_routes_work_together() {
    let app = spawn_app().await;
    let user = app
        .http
        .post(
            "/users",
            json!({"email": "Shopper@Example.com", "name": "Shopper", "password": crate::PASSWORD}),
        )
        .await;
    assert_eq!(user.status, 201);
    let user_path = user.header("location").unwrap().to_owned();
    let me = app
        .http
        .with_bearer(&app.login("shopper@example.com").await);
    assert_eq!(
        me.get(&user_path).await.body["email"],
        "shopper@example.com"
    );
    let patched = me.patch(&user_path, json!({"name": "Shopper Two"})).await;
    assert_eq!(patched.body["name"], "Shopper Two");

    let product = app
        .http
        .post(
            "/products",
            json!({"name": "Kettle", "price": "24.99", "stock": 3}),
        )
        .await;
    assert_eq!(product.status, 201);
    let product_path = product.header("location").unwrap().to_owned();
    assert_eq!(app.http.get(&product_path).await.body["price"], "24.99");
    assert_eq!(
        app.http
            .patch(&product_path, json!({"price": "19.99"}))
            .await
            .body["price"],
        "19.99"
    );
    assert_eq!(
        app.http
            .post(&format!("{product_path}/restock"), json!({"quantity": 2}))
            .await
            .body["stock"],
        5
    );
    let list = app.http.get("/products?page_size=1").await;
    assert_eq!((list.status, list.body["total"].as_u64()), (200, Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_problems() {
    let app = spawn_app().await;
    app.http
        .get("/nowhere")
        .await
        .assert_problem(404, "route_not_found");
    app.http
        .get("/users")
        .await
        .assert_problem(405, "method_not_allowed");
    app.http
        .raw(
            "DELETE",
            "/products/01900000-0000-7000-8000-000000000000",
            None,
            vec![],
        )
        .await
        .assert_problem(405, "method_not_allowed");
}

/// A sweep of hostile requests over every route: each answers 4xx problem+json.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_bad_request_on_any_route_yields_a_server_error() {
    let app = spawn_app().await;
    let user = app
        .http
        .post(
            "/users",
            json!({"email": "sweep@example.com", "name": "Sweep", "password": crate::PASSWORD}),
        )
        .await
        .body;
    let product = app
        .http
        .post(
            "/products",
            json!({"name": "Sweep", "price": "1", "stock": 1}),
        )
        .await
        .body;
    let (uid, pid) = (
        user["id"].as_str().unwrap(),
        product["id"].as_str().unwrap(),
    );
    let routes = [
        ("POST", "/users".to_owned()),
        ("PATCH", format!("/users/{uid}")),
        ("POST", "/products".to_owned()),
        ("PATCH", format!("/products/{pid}")),
        ("POST", format!("/products/{pid}/restock")),
    ];
    let bodies: [(&str, &[u8]); 10] = [
        ("application/json", b"{"),
        ("application/json", b"[]"),
        ("application/json", b"\"\""),
        (
            "application/json",
            b"{\"price\": {}, \"stock\": [], \"quantity\": null, \"email\": false}",
        ),
        ("application/json", b"{\"name\": \"\\ud800\"}"),
        ("application/json", &[0xff, 0xfe, 0x00]),
        ("application/json; charset=latin1", b"{}"),
        ("text/html", b"<html>"),
        ("application/xml", b"<user/>"),
        (
            "application/json",
            b"{\"email\": \"a@b.co\", \"name\": \"n\", \"name\": \"dup\"}",
        ),
    ];
    for (method, path) in &routes {
        for (content_type, body) in bodies {
            let answer = app
                .http
                .raw(method, path, Some(content_type), body.to_vec())
                .await;
            assert!(
                (400..500).contains(&answer.status) || answer.status == 200 || answer.status == 201,
                "{method} {path} {content_type} {body:?}: {} {:#}",
                answer.status,
                answer.body
            );
            if answer.status >= 400 {
                assert_eq!(
                    answer.header("content-type"),
                    Some("application/problem+json"),
                    "{method} {path}"
                );
            }
        }
    }
    for path in [
        "/users/%00",
        "/users/..%2F..%2Fetc",
        "/products/%FF",
        "/products?page=%FF",
        "/products?page_size=1e2",
    ] {
        let answer = app.http.get(path).await;
        assert!(
            (400..500).contains(&answer.status),
            "{path}: {}",
            answer.status
        );
    }
}
