//! The orders and payments contract through the assembled app: renames reach the read
//! model through events, payments queries, and a separate read database.

use std::time::{Duration, Instant};

use emporium::{Config, Hooks};
use serde_json::json;

use crate::{spawn_app, spawn_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_product_renames_reach_the_read_model() {
    let app = spawn_app().await;
    let user = app.user("rename@example.com").await;
    let product = app.product("Old name", "2.00", 5).await;
    let order = app.placed(&user, &[(&product, 1)]).await;
    app.http
        .patch(
            &format!("/users/{user}"),
            json!({"name": "New Person", "email": "new@example.com"}),
        )
        .await;
    app.http
        .patch(
            &format!("/products/{product}"),
            json!({"name": "New name", "price": "3.00"}),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let view = app.http.get(&format!("/queries/orders/{order}")).await.body;
        let renamed = view["user_name"] == "New Person"
            && view["user_email"] == "new@example.com"
            && view["items"][0]["product_name"] == "New name";
        if renamed {
            assert_eq!(
                view["items"][0]["price"], "2.00",
                "a price change applies to new orders only"
            );
            break;
        }
        assert!(Instant::now() < deadline, "renames never arrived: {view}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_are_queryable() {
    let app = spawn_app().await;
    let user = app.user("pay@example.com").await;
    let product = app.product("Cup", "4.20", 5).await;
    let order = app.placed(&user, &[(&product, 2)]).await;
    app.command(&order, "confirm", json!({"payment_token": "tok_declined"}))
        .await
        .assert_problem(402, "payment_declined");
    assert_eq!(
        app.command(&order, "confirm", json!({"payment_token": "tok_visa"}))
            .await
            .status,
        202
    );
    let list = app.http.get(&format!("/payments?order_id={order}")).await;
    assert_eq!(list.status, 200);
    let statuses: Vec<&str> = list.body["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["declined", "captured"]);
    let captured = &list.body["payments"][1];
    assert_eq!(captured["amount"], "8.40");
    let one = app
        .http
        .get(&format!("/payments/{}", captured["id"].as_str().unwrap()))
        .await;
    assert_eq!((one.status, &one.body), (200, captured));
    app.http
        .get("/payments")
        .await
        .assert_problem(400, "invalid_query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_model_can_live_in_another_database() {
    let write = crate::database().await;
    let read = crate::database().await;
    let read_url = read.url.clone();
    let app = spawn_with(
        write.clone(),
        move |url| Config {
            read_database_url: Some(read_url),
            ..Config::for_database(url)
        },
        Hooks::default(),
    )
    .await;
    let user = app.user("split@example.com").await;
    let product = app.product("Split", "1.00", 5).await;
    let order = app.placed(&user, &[(&product, 1)]).await;
    let view = app
        .http
        .get(&format!("/queries/orders/{order}?min_version=1"))
        .await;
    assert_eq!(
        (view.status, view.header("x-read-model-stale")),
        (200, None)
    );
    assert_eq!(
        read.scalar(&format!(
            "SELECT count(*) AS n FROM orders_read.orders WHERE id = '{order}'"
        ))
        .await,
        1
    );
    assert_eq!(
        write
            .scalar(&format!(
                "SELECT count(*) AS n FROM orders_read.orders WHERE id = '{order}'"
            ))
            .await,
        0
    );
}

/// Pools of one connection: the saga reads the orders log through the pool its own
/// transaction is on, and still confirms an order whose payment was captured (the
/// request stopped after the charge, so only the saga can confirm it) and commits its
/// stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_confirms_an_order_with_pools_of_one_connection() {
    let stop_after_charge: ::orders::FaultHook = std::sync::Arc::new(|point| {
        if point == "after_charge" {
            anyhow::bail!("stopped at {point}")
        } else {
            Ok(())
        }
    });
    let app = spawn_with(
        crate::database().await,
        |url| Config {
            db_pool_size: 1,
            ..Config::for_database(url)
        },
        Hooks {
            faults: Some(stop_after_charge),
            ..Hooks::default()
        },
    )
    .await;
    let user = app.user("single@example.com").await;
    let product = app.product("Single", "5.00", 4).await;
    let order = app.placed(&user, &[(&product, 3)]).await;
    app.command(&order, "confirm", json!({"payment_token": "tok_visa"}))
        .await
        .assert_problem(500, "internal_error");
    let confirmed = format!(
        "SELECT count(*) AS n FROM orders.orders WHERE id = '{order}' AND status = 'confirmed'"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.db.scalar(&confirmed).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the saga never confirmed the order with one connection per pool"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.stock(&product).await != (1, 0) {
        assert!(
            Instant::now() < deadline,
            "the saga never committed the stock: {:?}",
            app.stock(&product).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crate::invariants::assert_hold(&app.db).await;
}

/// The statuses of the order's payments, oldest first.
async fn payment_statuses(app: &crate::TestApp, order: &str) -> Vec<String> {
    let list = app.http.get(&format!("/payments?order_id={order}")).await;
    assert_eq!(list.status, 200, "{:#}", list.body);
    list.body["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap().to_owned())
        .collect()
}

/// A gateway that does not answer within `PAYMENT_GATEWAY_TIMEOUT` makes confirm `504
/// payment_pending` and leaves the payment `pending` and the order `pending`; another
/// confirm meanwhile is `409 payment_pending` and charges nothing. A gateway failure is
/// `502` with a `failed` payment, and the order can be paid after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_gateway_leaves_the_payment_pending() {
    let app = spawn_with(
        crate::database().await,
        |url| Config {
            payment_gateway_timeout: Duration::from_millis(800),
            ..Config::for_database(url)
        },
        Hooks::default(),
    )
    .await;
    let user = app.user("slow@example.com").await;
    let product = app.product("Slow", "3.00", 5).await;
    let order = app.placed(&user, &[(&product, 1)]).await;
    app.command(
        &order,
        "confirm",
        json!({"payment_token": "tok_timeout_failed"}),
    )
    .await
    .assert_problem(504, "payment_pending");
    assert_eq!(payment_statuses(&app, &order).await, ["pending"]);
    app.command(&order, "confirm", json!({"payment_token": "tok_visa"}))
        .await
        .assert_problem(409, "payment_pending");
    assert_eq!(payment_statuses(&app, &order).await, ["pending"]);
    let pending = format!(
        "SELECT count(*) AS n FROM orders.orders WHERE id = '{order}' AND status = 'pending'"
    );
    assert_eq!(app.db.scalar(&pending).await, 1, "the order waits");
    assert_eq!(
        app.db
            .scalar("SELECT count(*) AS n FROM gateway.ledger WHERE outcome = 'charged'")
            .await,
        0,
        "the second confirm never reached the gateway"
    );

    let other = app.placed(&user, &[(&product, 1)]).await;
    app.command(
        &other,
        "confirm",
        json!({"payment_token": "tok_gateway_error"}),
    )
    .await
    .assert_problem(502, "payment_gateway_error");
    assert_eq!(payment_statuses(&app, &other).await, ["failed"]);
    assert_eq!(
        app.command(&other, "confirm", json!({"payment_token": "tok_visa"}))
            .await
            .status,
        202
    );
    assert_eq!(payment_statuses(&app, &other).await, ["failed", "captured"]);
}
