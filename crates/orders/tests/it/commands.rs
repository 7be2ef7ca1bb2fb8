//! The command side of the contract: placement, transitions, payments, concurrency
//! control and idempotency (expiry: `sweeper.rs`).

use std::sync::Arc;

use serde_json::json;

use crate::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn place_reserves_stock_and_answers_202_with_version_1() {
    let app = spawn_app().await;
    let (user, product) = app.shop(10);
    let answer = app.place(&user, &product, 3).await;
    assert_eq!(answer.status, 202, "{:#}", answer.body);
    let id = answer.body["order_id"].as_str().unwrap();
    assert_eq!(
        (
            answer.body["status"].as_str(),
            answer.body["version"].as_i64()
        ),
        (Some("pending"), Some(1))
    );
    assert_eq!(answer.header("etag"), Some("\"1\""));
    assert_eq!(
        answer.header("location"),
        Some(format!("/queries/orders/{id}").as_str())
    );
    assert_eq!(app.stock(&product).await, (7, 3));

    let view = app.view(id, 1).await;
    assert_eq!(
        view["total"], "37.50",
        "price from the catalog times quantity, exact"
    );
    assert_eq!(view["items"][0]["subtotal"], "37.50");
    assert_eq!(view["items"][0]["product_name"], "Lamp");
    assert_eq!(
        (view["user_name"].as_str(), view["user_email"].as_str()),
        (Some("Buyer"), Some("buyer@example.com"))
    );
    assert_eq!(
        (view["status"].as_str(), view["status_display"].as_str()),
        (Some("pending"), Some("Pending"))
    );
    assert_eq!(view["cancel_reason"], json!(null));
    assert_eq!(view["item_count"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_orders_are_rejected_and_hold_nothing() {
    let app = spawn_app().await;
    let (user, product) = app.shop(5);
    let other = app.products.add("Other", "1.00", 5).id.to_string();
    let too_many: Vec<_> = (0..101)
        .map(|_| json!({"product_id": kernel::ProductId::generate(), "quantity": 1}))
        .collect();
    let cases = [
        (
            json!({"user_id": user, "items": []}),
            422,
            "validation_failed",
        ),
        (
            json!({"user_id": user, "items": too_many}),
            422,
            "validation_failed",
        ),
        (
            json!({"user_id": user, "items": [{"product_id": product, "quantity": 0}]}),
            422,
            "validation_failed",
        ),
        (
            json!({"user_id": user, "items": [{"product_id": product, "quantity": -2}]}),
            422,
            "validation_failed",
        ),
        (
            json!({"user_id": user, "items": [{"product_id": product, "quantity": 10_001}]}),
            422,
            "validation_failed",
        ),
        (
            json!({"user_id": user, "items": [{"product_id": product, "quantity": 1}, {"product_id": product, "quantity": 2}]}),
            422,
            "validation_failed",
        ),
        (
            // No `user_id`: the caller's own order, and this staff member is no user of
            // the shop.
            json!({"items": [{"product_id": product, "quantity": 1}]}),
            422,
            "unknown_user",
        ),
        (json!({"user_id": user}), 422, "validation_failed"),
        (
            json!({"user_id": user, "items": [{"quantity": 1}]}),
            422,
            "validation_failed",
        ),
        (
            json!({"user_id": user, "items": [{"product_id": product, "quantity": 1.5}]}),
            400,
            "invalid_body",
        ),
        (
            json!({"user_id": user, "items": [{"product_id": product, "quantity": "1"}]}),
            400,
            "invalid_body",
        ),
        (
            json!({"user_id": "nope", "items": [{"product_id": product, "quantity": 1}]}),
            400,
            "invalid_body",
        ),
        (
            json!({"user_id": user, "items": [{"product_id": product, "quantity": 1, "price": "0.01"}]}),
            400,
            "invalid_body",
        ),
        (
            json!({"user_id": user, "items": [{"product_id": product, "quantity": 1}], "total": "1"}),
            400,
            "invalid_body",
        ),
        (
            json!({"user_id": kernel::UserId::generate(), "items": [{"product_id": product, "quantity": 1}]}),
            422,
            "unknown_user",
        ),
        (
            json!({"user_id": user, "items": [{"product_id": kernel::ProductId::generate(), "quantity": 1}]}),
            422,
            "unknown_product",
        ),
        (
            json!({"user_id": user, "items": [{"product_id": other, "quantity": 1}, {"product_id": product, "quantity": 6}]}),
            409,
            "insufficient_stock",
        ),
    ];
    for (body, status, code) in cases {
        let answer = app.http.post("/commands/orders", body.clone()).await;
        let problem = answer.assert_problem(status, code);
        if code == "insufficient_stock" {
            assert!(
                problem["detail"].as_str().unwrap().contains(&product),
                "names the product: {problem}"
            );
        }
    }
    let inactive = app
        .users
        .add("gone@example.com", "Gone", false)
        .id
        .to_string();
    app.place(&inactive, &product, 1)
        .await
        .assert_problem(409, "user_inactive");

    assert_eq!(app.stock(&product).await, (5, 0), "nothing stays reserved");
    assert_eq!(
        app.stock(&other).await,
        (5, 0),
        "the other line was released too"
    );
    let visible = app
        .db
        .scalar("SELECT count(*) AS n FROM orders.orders WHERE status NOT IN ('rejected')")
        .await;
    assert_eq!(visible, 0, "no order exists");
    assert_eq!(
        app.db
            .scalar("SELECT count(*) AS n FROM orders.events")
            .await,
        0,
        "no event published"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_machine_over_http() {
    let app = spawn_app().await;
    let (user, product) = app.shop(100);
    let ok = |status: &str, version: i64| (202, Some(status.to_owned()), Some(version));
    // command sequences from a fresh pending order and what each step answers
    type Step = (u16, Option<String>, Option<i64>);
    let cases: Vec<(Vec<&str>, Vec<Step>)> = vec![
        (
            vec!["confirm", "ship", "deliver"],
            vec![ok("confirmed", 2), ok("shipped", 3), ok("delivered", 4)],
        ),
        (
            vec!["cancel", "confirm", "cancel", "ship"],
            vec![
                ok("cancelled", 2),
                (409, None, None),
                (409, None, None),
                (409, None, None),
            ],
        ),
        (
            vec!["ship", "deliver", "confirm", "cancel"],
            vec![
                (409, None, None),
                (409, None, None),
                ok("confirmed", 2),
                ok("cancelled", 3),
            ],
        ),
        (
            vec!["confirm", "ship", "cancel", "deliver"],
            vec![
                ok("confirmed", 2),
                ok("shipped", 3),
                ok("cancelled", 4),
                (409, None, None),
            ],
        ),
        (
            vec!["confirm", "ship", "deliver", "cancel", "confirm"],
            vec![
                ok("confirmed", 2),
                ok("shipped", 3),
                ok("delivered", 4),
                (409, None, None),
                (409, None, None),
            ],
        ),
    ];
    for (commands, expected) in cases {
        let id = app.placed(&user, &product, 1).await;
        for (command, want) in commands.iter().zip(expected) {
            let body = match *command {
                "confirm" => json!({"payment_token": "tok_visa"}),
                "cancel" => json!({"reason": "test"}),
                _ => json!({}),
            };
            let answer = app.command(&id, command, body).await;
            let got = (
                answer.status,
                answer.body["status"].as_str().map(str::to_owned),
                answer.body["version"].as_i64(),
            );
            if want.0 == 409 {
                answer.assert_problem(409, "invalid_transition");
            } else {
                assert_eq!(got, want, "{commands:?} at {command}: {:#}", answer.body);
                assert_eq!(
                    answer.header("etag"),
                    Some(format!("\"{}\"", want.2.unwrap()).as_str())
                );
            }
        }
    }
    let unknown = kernel::OrderId::generate();
    app.command(&unknown.to_string(), "ship", json!({}))
        .await
        .assert_problem(404, "order_not_found");
    app.command("not-an-id", "ship", json!({}))
        .await
        .assert_problem(400, "invalid_path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_charges_through_the_payments_module() {
    let app = spawn_app().await;
    let (user, product) = app.shop(10);
    let id = app.placed(&user, &product, 2).await;

    app.command(&id, "confirm", json!({"payment_token": "tok_declined"}))
        .await
        .assert_problem(402, "payment_declined");
    app.command(
        &id,
        "confirm",
        json!({"payment_token": "tok_gateway_error"}),
    )
    .await
    .assert_problem(502, "payment_gateway_error");
    let bad = app
        .command(&id, "confirm", json!({"payment_token": "tok_unknown"}))
        .await;
    assert_eq!(
        bad.assert_problem(422, "invalid_payment_token")["errors"][0]["field"],
        "payment_token"
    );
    app.command(&id, "confirm", json!({}))
        .await
        .assert_problem(422, "validation_failed");
    app.command(&id, "confirm", json!({"payment_token": 42}))
        .await
        .assert_problem(400, "invalid_body");
    assert_eq!(
        app.view(&id, 1).await["status"],
        "pending",
        "still pending after failed payments"
    );
    assert_eq!(app.stock(&product).await, (8, 2), "stock stays reserved");
    assert_eq!(app.payments.charges(), 0);

    let confirmed = app
        .command(&id, "confirm", json!({"payment_token": "tok_visa"}))
        .await;
    assert_eq!(
        (confirmed.status, confirmed.body["version"].as_i64()),
        (202, Some(2)),
        "{:#}",
        confirmed.body
    );
    assert_eq!(app.payments.charges(), 1);
    assert_eq!(
        app.stock(&product).await,
        (8, 0),
        "the reservation is committed"
    );
    assert_eq!(app.view(&id, 2).await["status"], "confirmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_releases_or_refunds_and_returns_stock() {
    let app = spawn_app().await;
    let (user, product) = app.shop(10);

    let pending = app.placed(&user, &product, 4).await;
    assert_eq!(app.stock(&product).await, (6, 4));
    for (body, status, code) in [
        (json!({}), 422, "validation_failed"),
        (json!({"reason": " "}), 422, "validation_failed"),
        (json!({"reason": "x".repeat(501)}), 422, "validation_failed"),
        (json!({"reason": 5}), 400, "invalid_body"),
    ] {
        app.command(&pending, "cancel", body)
            .await
            .assert_problem(status, code);
    }
    let cancelled = app
        .command(&pending, "cancel", json!({"reason": "found it cheaper"}))
        .await;
    assert_eq!(cancelled.status, 202);
    assert_eq!(
        app.stock(&product).await,
        (10, 0),
        "a pending order's reservation is released"
    );
    let view = app.view(&pending, 2).await;
    assert_eq!(
        (view["status"].as_str(), view["cancel_reason"].as_str()),
        (Some("cancelled"), Some("found it cheaper"))
    );

    let paid = app.placed(&user, &product, 3).await;
    app.command(&paid, "confirm", json!({"payment_token": "tok_visa"}))
        .await;
    app.command(&paid, "ship", json!({})).await;
    assert_eq!(app.stock(&product).await, (7, 0));
    assert_eq!(
        app.command(&paid, "cancel", json!({"reason": "lost in transit"}))
            .await
            .status,
        202
    );
    assert_eq!(app.payments.refunds(), 1, "a paid order is refunded");
    assert_eq!(app.stock(&product).await, (10, 0), "and its stock returned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_guards_every_command() {
    let app = spawn_app().await;
    let (user, product) = app.shop(10);
    let id = app.placed(&user, &product, 1).await;
    let confirm = |version: &'static str| {
        let app = &app;
        let id = id.clone();
        async move {
            let url = format!("/commands/orders/{id}/confirm");
            let response = app
                .http
                .request("POST", &url)
                .header("If-Match", version)
                .json(&json!({"payment_token": "tok_visa"}))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(confirm("\"2\"").await.0, 412, "stale version");
    assert_eq!(confirm("banana").await.0, 400, "malformed If-Match");
    assert_eq!(
        app.payments.charges(),
        0,
        "a refused command charges nothing"
    );
    assert_eq!(confirm("\"1\"").await.0, 202);
    let ship = |version: &'static str| {
        let app = &app;
        let id = id.clone();
        async move {
            let url = format!("/commands/orders/{id}/ship");
            app.http
                .request("POST", &url)
                .header("If-Match", version)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(ship("\"1\"").await, 412);
    assert_eq!(ship("W/\"2\"").await, 202);
    assert_eq!(app.view(&id, 3).await["status"], "shipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_one_order_never_both_succeed() {
    let app = Arc::new(spawn_app().await);
    let (user, product) = app.shop(10);
    let id = app.placed(&user, &product, 1).await;
    app.command(&id, "confirm", json!({"payment_token": "tok_visa"}))
        .await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (app, id) = (app.clone(), id.clone());
            tokio::spawn(async move {
                if i % 2 == 0 {
                    app.command(&id, "ship", json!({})).await.status
                } else {
                    app.command(&id, "cancel", json!({"reason": "race"}))
                        .await
                        .status
                }
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let wins = statuses.iter().filter(|s| **s == 202).count();
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 409),
        "{statuses:?}"
    );
    // Either one ship then one cancel (shipped orders can be cancelled), or one cancel.
    let versions = app
        .db
        .scalar(&format!(
            "SELECT version AS n FROM orders.orders WHERE id = '{id}'"
        ))
        .await;
    assert_eq!(
        versions,
        2 + wins as i64,
        "each success is one version: {statuses:?}"
    );
    let events = app
        .db
        .scalar(&format!(
            "SELECT count(*) AS n FROM orders.events WHERE aggregate_id = '{id}'"
        ))
        .await;
    assert_eq!(
        events, versions,
        "one event per version, none lost or doubled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_the_first_answer() {
    let app = Arc::new(spawn_app().await);
    let (user, product) = app.shop(10);
    let body = json!({"user_id": user, "items": [{"product_id": product, "quantity": 2}]});
    let post = |key: String, body: serde_json::Value| {
        let app = app.clone();
        async move { crate::place_with_key(&app.http, &key, &body).await }
    };
    let first = post("key-1".into(), body.clone()).await;
    assert_eq!(first.0, 202);
    let again = post("key-1".into(), body.clone()).await;
    assert_eq!(again, first, "the same answer");
    let other = json!({"user_id": user, "items": [{"product_id": product, "quantity": 3}]});
    let reused = post("key-1".into(), other).await;
    assert_eq!(
        (reused.0, reused.1["code"].as_str()),
        (409, Some("idempotency_key_reused"))
    );
    assert_eq!(
        post("x".repeat(256), body.clone()).await.0,
        400,
        "keys are at most 255 characters"
    );
    assert_eq!(
        app.stock(&product).await,
        (8, 2),
        "one order, one reservation"
    );

    // Concurrent replays of a fresh key create one order.
    let tasks: Vec<_> = (0..10)
        .map(|_| tokio::spawn(post("key-2".into(), body.clone())))
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        let (status, answer) = task.await.unwrap();
        assert_eq!(status, 202, "{answer}");
        ids.push(answer["order_id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every replay answers the same order");
    assert_eq!(app.stock(&product).await, (6, 4));
    let placed = app
        .db
        .scalar("SELECT count(*) AS n FROM orders.orders WHERE status = 'pending'")
        .await;
    assert_eq!(placed, 2);
}

/// A placement cut short after its reservation (a crash before the commit) leaves no order,
/// line, event or key; a retry with the key places the order once. (The stock coming back
/// is `guarantees.rs`'s in the app suite: the fake products take no part in transactions.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placement_cut_short_leaves_nothing_behind() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let crashed = Arc::new(AtomicBool::new(false));
    let crash_once: orders::FaultHook = Arc::new({
        let crashed = crashed.clone();
        move |point| {
            if point == "after_reserve" && !crashed.swap(true, Ordering::SeqCst) {
                anyhow::bail!("crash at {point}")
            }
            Ok(())
        }
    });
    let app = crate::spawn_with(orders::Settings {
        faults: Some(crash_once),
        ..crate::spawn_settings()
    })
    .await;
    let (user, product) = app.shop(10);
    let body = json!({"user_id": user, "items": [{"product_id": product, "quantity": 3}]});
    let post = async || crate::place_with_key(&app.http, "cut-short", &body).await;
    let (status, problem) = post().await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (500, Some("internal_error"))
    );
    assert!(
        crashed.load(Ordering::SeqCst),
        "the placement reached the crash"
    );
    for table in ["orders", "order_lines", "idempotency_keys", "events"] {
        let rows = app
            .db
            .scalar(&format!("SELECT count(*) AS n FROM orders.{table}"))
            .await;
        assert_eq!(
            rows, 0,
            "orders.{table} keeps nothing of the cut-short placement"
        );
    }

    let (status, placed) = post().await;
    assert_eq!(status, 202, "{placed:#}");
    assert_eq!(
        post().await,
        (202, placed.clone()),
        "the retry is answered again"
    );
    let orders = app
        .db
        .scalar("SELECT count(*) AS n FROM orders.orders WHERE status = 'pending'")
        .await;
    assert_eq!(orders, 1);
}
