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
    app.as_user(&user)
        .patch(
            &format!("/users/{user}"),
            json!({"name": "New Person", "email": "new@example.com",
                "current_password": crate::PASSWORD}),
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

/// Two instances with the read model in another database: each reads with `min_version`,
/// fresh, what the other wrote (the waiter woken by the projection of whichever instance
/// applied it, or its fallback look); the projection's checkpoints are in the read database, none in the write
/// one; and when one instance stops, the other projects on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_a_read_model_in_another_database() {
    let (write, read) = (crate::database().await, crate::database().await);
    let config = |read_url: String| {
        move |url: &str| Config {
            read_database_url: Some(read_url),
            ..Config::for_database(url)
        }
    };
    let first = spawn_with(write.clone(), config(read.url.clone()), Hooks::default()).await;
    let second = spawn_with(write.clone(), config(read.url.clone()), Hooks::default()).await;
    let user = first.user("shared@example.com").await;
    let product = first.product("Shared", "2.00", 5).await;
    // Each look waits up to 2 s for the read model (`min_version`); on a loaded machine
    // the projection can take longer, so an answer not yet fresh (404, or stale) is asked
    // again until `wait_for`'s deadline. Any other answer is the one compared.
    let fresh = async |app: &crate::TestApp, order: &str, version: i64| {
        let mut answer = None;
        crate::wait_for("the read model reaches the version", async || {
            let view = app
                .http
                .get(&format!("/queries/orders/{order}?min_version={version}"))
                .await;
            let stale = view.header("x-read-model-stale").map(str::to_owned);
            let settled = view.status != 404 && stale.is_none();
            answer = Some((view.status, stale, view.body["version"].as_i64()));
            settled
        })
        .await;
        answer.unwrap()
    };
    for (writer, reader) in [(&first, &second), (&second, &first)] {
        let order = writer.placed(&user, &[(&product, 1)]).await;
        assert_eq!(fresh(reader, &order, 1).await, (200, None, Some(1)));
        let cancelled = reader
            .command(&order, "cancel", json!({"reason": "changed my mind"}))
            .await;
        assert_eq!(cancelled.status, 202, "{:#}", cancelled.body);
        let version = cancelled.body["version"].as_i64().unwrap();
        assert_eq!(
            fresh(writer, &order, version).await,
            (200, None, Some(version))
        );
    }
    let checkpoints = "SELECT count(*) AS n FROM orders_read.checkpoints";
    assert!(read.scalar(checkpoints).await > 0);
    assert_eq!(write.scalar(checkpoints).await, 0);
    first.stop().await;
    let order = second.placed(&user, &[(&product, 1)]).await;
    assert_eq!(fresh(&second, &order, 1).await, (200, None, Some(1)));
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

/// The app with a short gateway deadline (the simulated gateway's slow tokens answer after
/// twice it; the reconciler first asks after twice it).
async fn slow_gateway_app(hooks: Hooks) -> crate::TestApp {
    spawn_with(
        crate::database().await,
        |url| Config {
            payment_gateway_timeout: Duration::from_millis(800),
            ..Config::for_database(url)
        },
        hooks,
    )
    .await
}

async fn order_status_is(app: &crate::TestApp, order: &str, status: &str) -> bool {
    app.db
        .scalar(&format!(
            "SELECT count(*) AS n FROM orders.orders WHERE id = '{order}' AND status = '{status}'"
        ))
        .await
        == 1
}

async fn ledger(app: &crate::TestApp, outcome: &str) -> i64 {
    app.db
        .scalar(&format!(
            "SELECT count(*) AS n FROM gateway.ledger WHERE outcome = '{outcome}'"
        ))
        .await
}

/// `tok_timeout`: confirm is `504 payment_pending`; another confirm meanwhile is `409
/// payment_pending` and charges nothing; the reconciler settles the payment captured and
/// the saga confirms the order by itself, with one charge at the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_answered_too_late_confirms_the_order_by_itself() {
    let app = slow_gateway_app(Hooks::default()).await;
    let user = app.user("late@example.com").await;
    let product = app.product("Late", "3.00", 5).await;
    let order = app.placed(&user, &[(&product, 2)]).await;
    app.command(&order, "confirm", json!({"payment_token": "tok_timeout"}))
        .await
        .assert_problem(504, "payment_pending");
    app.command(&order, "confirm", json!({"payment_token": "tok_visa"}))
        .await
        .assert_problem(409, "payment_pending");
    crate::wait_for("the order is confirmed", async || {
        order_status_is(&app, &order, "confirmed").await
    })
    .await;
    assert_eq!(payment_statuses(&app, &order).await, ["captured"]);
    assert_eq!(
        ledger(&app, "charged").await,
        1,
        "one charge at the gateway"
    );
    let view = app
        .http
        .get(&format!("/queries/orders/{order}?min_version=2"))
        .await;
    assert_eq!(view.body["status"], "confirmed", "{:#}", view.body);
    crate::invariants::assert_hold(&app.db).await;
}

/// `tok_timeout_failed`: confirm is `504 payment_pending`, then the payment becomes
/// `failed` and the order stays `pending`, payable again. A gateway failure is `502` with
/// a `failed` payment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_answered_too_late_leaves_the_order_pending() {
    let app = slow_gateway_app(Hooks::default()).await;
    let user = app.user("failed@example.com").await;
    let product = app.product("Failed", "3.00", 5).await;
    let order = app.placed(&user, &[(&product, 1)]).await;
    app.command(
        &order,
        "confirm",
        json!({"payment_token": "tok_timeout_failed"}),
    )
    .await
    .assert_problem(504, "payment_pending");
    crate::wait_for("the payment has failed", async || {
        payment_statuses(&app, &order).await == ["failed"]
    })
    .await;
    assert!(order_status_is(&app, &order, "pending").await);
    assert_eq!(ledger(&app, "charged").await, 0);
    app.command(
        &order,
        "confirm",
        json!({"payment_token": "tok_gateway_error"}),
    )
    .await
    .assert_problem(502, "payment_gateway_error");
    assert_eq!(
        app.command(&order, "confirm", json!({"payment_token": "tok_visa"}))
            .await
            .status,
        202
    );
    assert_eq!(
        payment_statuses(&app, &order).await,
        ["failed", "failed", "captured"]
    );
    crate::invariants::assert_hold(&app.db).await;
}

/// A crash between the gateway's capture and our commit: the payment stays `pending`,
/// the reconciler settles it captured, the saga confirms the order, and the gateway's
/// ledger holds exactly one charge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_gateway_captured_is_settled_with_one_charge() {
    let crash: ::orders::FaultHook = std::sync::Arc::new(|point| {
        if point == "after_gateway_charge" {
            anyhow::bail!("simulated crash at {point}")
        } else {
            Ok(())
        }
    });
    let app = slow_gateway_app(Hooks {
        faults: Some(crash),
        ..Hooks::default()
    })
    .await;
    let user = app.user("crash@example.com").await;
    let product = app.product("Crash", "4.00", 5).await;
    let order = app.placed(&user, &[(&product, 1)]).await;
    app.command(&order, "confirm", json!({"payment_token": "tok_visa"}))
        .await
        .assert_problem(500, "internal_error");
    assert_eq!(payment_statuses(&app, &order).await, ["pending"]);
    crate::wait_for("the order is confirmed", async || {
        order_status_is(&app, &order, "confirmed").await
    })
    .await;
    assert_eq!(payment_statuses(&app, &order).await, ["captured"]);
    assert_eq!(ledger(&app, "charged").await, 1, "exactly one charge");
    assert_eq!(
        app.db
            .scalar("SELECT count(*) AS n FROM gateway.ledger")
            .await,
        1
    );
    crate::invariants::assert_hold(&app.db).await;
}

/// An order cancelled while its payment is pending: when the payment settles captured,
/// the saga refunds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_capture_of_a_cancelled_order_is_refunded() {
    let app = slow_gateway_app(Hooks::default()).await;
    let user = app.user("cancelled@example.com").await;
    let product = app.product("Cancelled", "5.00", 5).await;
    let order = app.placed(&user, &[(&product, 1)]).await;
    app.command(&order, "confirm", json!({"payment_token": "tok_timeout"}))
        .await
        .assert_problem(504, "payment_pending");
    assert_eq!(
        app.command(&order, "cancel", json!({"reason": "too slow"}))
            .await
            .status,
        202
    );
    crate::wait_for("the late capture is refunded", async || {
        payment_statuses(&app, &order).await == ["refunded"]
    })
    .await;
    assert!(order_status_is(&app, &order, "cancelled").await);
    assert_eq!(ledger(&app, "refunded").await, 1);
    assert_eq!(ledger(&app, "charged").await, 0);
    crate::invariants::assert_hold(&app.db).await;
}
