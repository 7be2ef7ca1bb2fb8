//! The guarantees of issue 3, each with a test that fails if it breaks: no overselling and
//! one charge under concurrency, late commits, a crash between cross-module steps, replay,
//! two processes on one database, and the invariants after a randomized run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use emporium::{Config, Hooks};
use kernel::NewEvent;
use serde_json::json;

use crate::invariants;
use crate::{TestApp, database, spawn_app, spawn_on, spawn_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_orders_for_twenty_units_accept_exactly_twenty() {
    let app = Arc::new(spawn_app().await);
    // Five customers, ten orders each: within MAX_PENDING_ORDERS, so only stock refuses.
    let mut crowd = Vec::new();
    for i in 0..5 {
        crowd.push(app.user(&format!("crowd{i}@example.com")).await);
    }
    let product = app.product("Hot item", "5.00", 20).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (app, user, product) = (app.clone(), crowd[i % 5].clone(), product.clone());
            tokio::spawn(async move { app.order(&user, &[(&product, 1)]).await })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        match answer.status {
            202 => accepted += 1,
            _ => {
                answer.assert_problem(409, "insufficient_stock");
            }
        }
    }
    assert_eq!(accepted, 20);
    assert_eq!(app.stock(&product).await, (0, 20));
    invariants::assert_hold(&app.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_six_concurrent_confirms_exactly_one_succeeds_and_charges_once() {
    let app = Arc::new(spawn_app().await);
    let user = app.user("payer@example.com").await;
    let product = app.product("Chair", "40.00", 5).await;
    let order = app.placed(&user, &[(&product, 2)]).await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (app, order) = (app.clone(), order.clone());
            tokio::spawn(async move {
                app.command(&order, "confirm", json!({"payment_token": "tok_visa"}))
                    .await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        let answer = task.await.unwrap();
        if answer.status != 202 {
            // Refused while the winner charges (`payment_pending`), or after it confirmed.
            assert_eq!(answer.status, 409, "{:#}", answer.body);
            let code = answer.body["code"].as_str().unwrap_or_default().to_owned();
            assert!(
                ["payment_pending", "invalid_transition"].contains(&code.as_str()),
                "{:#}",
                answer.body
            );
        }
        statuses.push(answer.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "exactly one confirm succeeds: {statuses:?}"
    );
    let captured = app.db.scalar(&format!("SELECT count(*) AS n FROM payments.payments WHERE order_id = '{order}' AND status = 'captured'")).await;
    assert_eq!(captured, 1, "exactly one charge");
    let events = app
        .db
        .scalar("SELECT count(*) AS n FROM payments.events WHERE event_type = 'payment.captured'")
        .await;
    assert_eq!(events, 1);
    invariants::assert_hold(&app.db).await;
}

/// Two writers: the one with the lower log position commits last. The projection must
/// apply both (a reader ordering by a plain sequence would skip the late one for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projection_applies_an_event_that_commits_late() {
    let app = spawn_app().await;
    let (early, late) = (
        app.user("early@example.com").await,
        app.user("late@example.com").await,
    );
    let product = app.product("Book", "9.00", 10).await;
    let (early_order, late_order) = (
        app.placed(&early, &[(&product, 1)]).await,
        app.placed(&late, &[(&product, 1)]).await,
    );
    app.http
        .get(&format!("/queries/orders/{late_order}?min_version=1"))
        .await;

    // Writer A takes its position first and holds its transaction open.
    let mut a = app.db.connect().await;
    a.batch_execute("BEGIN").await.unwrap();
    let renamed = NewEvent::new(
        users_api::events::USER_UPDATED,
        early.parse::<uuid::Uuid>().unwrap(),
        2,
        &users_api::events::UserUpdated {
            email: "early@example.com".into(),
            name: "Renamed Early".into(),
            active: true,
        },
    );
    eventlog::append(&mut a, "users", &[renamed]).await.unwrap();
    // Writer B (an ordinary request) commits after A began.
    assert_eq!(
        app.as_user(&late)
            .patch(&format!("/users/{late}"), json!({"name": "Renamed Late"}))
            .await
            .status,
        200
    );
    a.batch_execute("COMMIT").await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let early_view = app
            .http
            .get(&format!("/queries/orders/{early_order}"))
            .await
            .body;
        let late_view = app
            .http
            .get(&format!("/queries/orders/{late_order}"))
            .await
            .body;
        if early_view["user_name"] == "Renamed Early" && late_view["user_name"] == "Renamed Late" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the projection missed an event: {early_view} {late_view}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fault hook that stops every command reaching `at`, as a crash there would.
fn crash_at(at: &'static str) -> ::orders::FaultHook {
    Arc::new(move |point| {
        if point == at {
            anyhow::bail!("simulated crash at {point}")
        }
        Ok(())
    })
}

/// A process stops in the middle of a placement, after the products module reserved the
/// stock and before the commit: the reservation goes with the order, so nothing is left to
/// release and no sweep is needed; a retry places the order once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placement_cut_short_after_its_reservation_leaves_the_stock_whole() {
    let db = database().await;
    let crash = crash_at("after_reserve");
    let dying = spawn_on(
        db.clone(),
        Hooks {
            background: false,
            faults: Some(crash),
            ..Hooks::default()
        },
    )
    .await;
    let user = dying.user("cut@example.com").await;
    let product = dying.product("Lamp", "12.00", 5).await;
    dying
        .order(&user, &[(&product, 2)])
        .await
        .assert_problem(500, "internal_error");
    assert_eq!(
        dying.stock(&product).await,
        (5, 0),
        "nothing stays reserved"
    );
    for (table, rows) in [
        ("products.reservations", 0),
        ("products.reservation_lines", 0),
        ("orders.orders", 0),
        ("orders.events", 0),
    ] {
        let found = db
            .scalar(&format!("SELECT count(*) AS n FROM {table}"))
            .await;
        assert_eq!(found, rows, "{table}");
    }
    invariants::assert_hold(&db).await;
    dying.stop().await;

    let restarted = spawn_on(db.clone(), Hooks::default()).await;
    let order = restarted.placed(&user, &[(&product, 2)]).await;
    assert_eq!(restarted.stock(&product).await, (3, 2));
    let view = restarted
        .http
        .get(&format!("/queries/orders/{order}?min_version=1"))
        .await;
    assert_eq!(view.body["status"], "pending", "{:#}", view.body);
    invariants::assert_hold(&db).await;
}

/// A process stops after the payment is captured but before the order is confirmed. After
/// a restart the saga confirms the order and commits its stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_charge_and_confirm_ends_confirmed_after_restart() {
    let db = database().await;
    let crash = crash_at("after_charge");
    let dying = spawn_on(
        db.clone(),
        Hooks {
            background: false,
            faults: Some(crash),
            ..Hooks::default()
        },
    )
    .await;
    let user = dying.user("crash@example.com").await;
    let product = dying.product("Vase", "30.00", 3).await;
    let order = dying.placed(&user, &[(&product, 2)]).await;
    dying
        .command(&order, "confirm", json!({"payment_token": "tok_visa"}))
        .await
        .assert_problem(500, "internal_error");
    let payments = dying
        .http
        .get(&format!("/payments?order_id={order}"))
        .await
        .body;
    assert_eq!(
        payments["payments"][0]["status"], "captured",
        "the charge went through"
    );
    let status = db
        .scalar(&format!(
            "SELECT count(*) AS n FROM orders.orders WHERE id = '{order}' AND status = 'pending'"
        ))
        .await;
    assert_eq!(status, 1, "the order was left pending");
    dying.stop().await;

    let restarted = spawn_on(db.clone(), Hooks::default()).await;
    let view = restarted
        .http
        .get(&format!("/queries/orders/{order}?min_version=2"))
        .await;
    assert_eq!(view.header("x-read-model-stale"), None, "{:#}", view.body);
    assert_eq!(view.body["status"], "confirmed");
    invariants::assert_hold(&db).await;
    assert_eq!(
        restarted.stock(&product).await,
        (1, 0),
        "the stock was committed"
    );
}

/// A process stops after cancelling a paid order but before refunding it and returning
/// its stock. After a restart both are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_cancel_ends_refunded_with_stock_back_after_restart() {
    let db = database().await;
    let healthy = spawn_on(db.clone(), Hooks::default()).await;
    let user = healthy.user("cancel@example.com").await;
    let product = healthy.product("Rug", "80.00", 4).await;
    let order = healthy.placed(&user, &[(&product, 3)]).await;
    assert_eq!(
        healthy
            .command(&order, "confirm", json!({"payment_token": "tok_visa"}))
            .await
            .status,
        202
    );
    invariants::assert_hold(&db).await;
    healthy.stop().await;

    let crash = crash_at("after_cancel");
    let dying = spawn_on(
        db.clone(),
        Hooks {
            background: false,
            faults: Some(crash),
            ..Hooks::default()
        },
    )
    .await;
    dying
        .command(&order, "cancel", json!({"reason": "changed my mind"}))
        .await
        .assert_problem(500, "internal_error");
    assert_eq!(
        dying.stock(&product).await,
        (1, 0),
        "the crash left the stock out"
    );
    dying.stop().await;

    let restarted = spawn_on(db.clone(), Hooks::default()).await;
    invariants::assert_hold(&db).await;
    assert_eq!(restarted.stock(&product).await, (4, 0));
    let payments = restarted
        .http
        .get(&format!("/payments?order_id={order}"))
        .await
        .body;
    assert_eq!(payments["payments"][0]["status"], "refunded");
}

/// Every event delivered a second time (checkpoints rewound, as after a crash before the
/// checkpoint moved) changes nothing: not the read model, not stock, not payments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_every_event_changes_nothing() {
    let app = spawn_app().await;
    let user = app.user("replay@example.com").await;
    let product = app.product("Lamp", "15.00", 10).await;
    let paid = app.placed(&user, &[(&product, 2)]).await;
    app.command(&paid, "confirm", json!({"payment_token": "tok_visa"}))
        .await;
    let cancelled = app.placed(&user, &[(&product, 1)]).await;
    app.command(&cancelled, "confirm", json!({"payment_token": "tok_visa"}))
        .await;
    app.command(&cancelled, "cancel", json!({"reason": "no"}))
        .await;
    app.as_user(&user)
        .patch(&format!("/users/{user}"), json!({"name": "Renamed"}))
        .await;
    app.http
        .patch(
            &format!("/products/{product}"),
            json!({"name": "Desk lamp"}),
        )
        .await;
    invariants::assert_hold(&app.db).await;

    let snapshot = |app: &TestApp| {
        let db = app.db.clone();
        async move {
            let mut conn = db.connect().await;
            #[derive(diesel::QueryableByName, PartialEq, Debug)]
            struct Snapshot {
                #[diesel(sql_type = diesel::sql_types::Text)]
                state: String,
            }
            let rows: Vec<Snapshot> = diesel::sql_query(
                "SELECT (SELECT coalesce(json_agg(o ORDER BY id), '[]') FROM orders_read.orders o)::text \
                 || (SELECT coalesce(json_agg(i ORDER BY order_id, line), '[]') FROM orders_read.order_items i)::text \
                 || (SELECT json_agg(p ORDER BY id) FROM products.products p)::text \
                 || (SELECT json_agg(p ORDER BY id) FROM payments.payments p)::text \
                 || (SELECT json_agg(o ORDER BY id) FROM orders.orders o)::text AS state",
            )
            .load(&mut conn)
            .await
            .unwrap();
            rows
        }
    };
    let before = snapshot(&app).await;
    let events_before = app.db.scalar("SELECT (SELECT count(*) FROM orders.events) + (SELECT count(*) FROM payments.events) + (SELECT count(*) FROM products.events) AS n").await;
    let rewound = app.db.scalar("WITH a AS (UPDATE orders_read.checkpoints SET xid = '0', seq = 0, applied = 0 RETURNING 1), \
        b AS (UPDATE orders.checkpoints SET xid = '0', seq = 0, applied = 0 RETURNING 1) \
        SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM b) AS n").await;
    assert_eq!(rewound, 5, "three projection and two saga subscriptions");
    invariants::assert_hold(&app.db).await; // waits until every event was delivered again
    assert_eq!(
        snapshot(&app).await,
        before,
        "the second delivery changed nothing"
    );
    let events_after = app.db.scalar("SELECT (SELECT count(*) FROM orders.events) + (SELECT count(*) FROM payments.events) + (SELECT count(*) FROM products.events) AS n").await;
    assert_eq!(
        events_after, events_before,
        "no new events: no second refund, confirm or stock move"
    );
}

/// Two processes on one database, each delivering events: every event is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_apply_each_event_once() {
    let db = database().await;
    let first = Arc::new(spawn_on(db.clone(), Hooks::default()).await);
    let second = Arc::new(spawn_on(db.clone(), Hooks::default()).await);
    // Four customers, ten orders each (within MAX_PENDING_ORDERS).
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(first.user(&format!("two{i}@example.com")).await);
    }
    let product = first.product("Pen", "1.50", 1000).await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let app = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let (user, product) = (users[i / 10].clone(), product.clone());
            tokio::spawn(async move {
                let order = app.placed(&user, &[(&product, 1)]).await;
                match i % 4 {
                    0 => {
                        app.command(&order, "confirm", json!({"payment_token": "tok_visa"}))
                            .await;
                    }
                    1 => {
                        app.command(&order, "cancel", json!({"reason": "no"})).await;
                    }
                    2 => {
                        app.command(&order, "confirm", json!({"payment_token": "tok_visa"}))
                            .await;
                        app.command(&order, "cancel", json!({"reason": "no"})).await;
                    }
                    _ => {}
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    invariants::assert_hold(&db).await;
}

/// A few hundred random commands through two processes, confirms with every token
/// (the slow ones past a short gateway deadline, left to the reconciler), then the
/// invariants, the gateway's ledger against the payments included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariants_hold_after_a_randomized_run() {
    let db = database().await;
    let short_deadline = |url: &str| Config {
        payment_gateway_timeout: Duration::from_millis(300),
        ..Config::for_database(url)
    };
    let apps = [
        Arc::new(spawn_with(db.clone(), short_deadline, Hooks::default()).await),
        Arc::new(spawn_with(db.clone(), short_deadline, Hooks::default()).await),
    ];
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(apps[0].user(&format!("random{i}@example.com")).await);
    }
    let mut products = Vec::new();
    for (i, stock) in [3, 8, 20, 50].into_iter().enumerate() {
        products.push(
            apps[0]
                .product(&format!("P{i}"), &format!("{}.25", i + 1), stock)
                .await,
        );
    }
    let (users, products) = (Arc::new(users), Arc::new(products));
    let workers: Vec<_> = (0..4u64)
        .map(|worker| {
            let (app, users, products) = (
                apps[worker as usize % 2].clone(),
                users.clone(),
                products.clone(),
            );
            tokio::spawn(async move {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (worker + 1));
                let mut orders: Vec<String> = Vec::new();
                for _ in 0..80 {
                    let pick = rng.next() % 100;
                    let status = if pick < 35 || orders.is_empty() {
                        let user = &users[(rng.next() % 4) as usize];
                        let a = &products[(rng.next() % 4) as usize];
                        let b = &products[(rng.next() % 4) as usize];
                        let mut lines = vec![(a.as_str(), (rng.next() % 4 + 1) as i64)];
                        if a != b && rng.next().is_multiple_of(2) {
                            lines.push((b.as_str(), (rng.next() % 3 + 1) as i64));
                        }
                        let answer = app.order(user, &lines).await;
                        if answer.status == 202 {
                            orders.push(answer.body["order_id"].as_str().unwrap().to_owned());
                        }
                        answer.status
                    } else {
                        let order = &orders[(rng.next() % orders.len() as u64) as usize];
                        let (command, body) = match pick {
                            35..=54 => {
                                let tokens = [
                                    "tok_visa",
                                    "tok_visa",
                                    "tok_declined",
                                    "tok_gateway_error",
                                    "tok_timeout",
                                    "tok_timeout_failed",
                                ];
                                let token = tokens[(rng.next() % tokens.len() as u64) as usize];
                                ("confirm", json!({"payment_token": token}))
                            }
                            55..=69 => ("ship", json!({})),
                            70..=79 => ("deliver", json!({})),
                            80..=91 => ("cancel", json!({"reason": "random"})),
                            92..=95 => {
                                let product = &products[(rng.next() % 4) as usize];
                                app.http
                                    .post(
                                        &format!("/products/{product}/restock"),
                                        json!({"quantity": rng.next() % 5 + 1}),
                                    )
                                    .await;
                                continue;
                            }
                            _ => {
                                let user = &users[(rng.next() % 4) as usize];
                                app.as_user(user)
                                    .patch(
                                        &format!("/users/{user}"),
                                        json!({"name": format!("n{}", rng.next() % 100)}),
                                    )
                                    .await;
                                continue;
                            }
                        };
                        app.command(order, command, body).await.status
                    };
                    // 502: a gateway failure; 504: a slow token's payment left pending.
                    assert!(
                        status < 500 || status == 502 || status == 504,
                        "a command failed with {status}"
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    crate::wait_for("the reconciler settled every payment", async || {
        db.scalar(&::invariants::unsettled_payments()).await == 0
    })
    .await;
    invariants::assert_hold(&db).await;
    let orders = db
        .scalar("SELECT count(*) AS n FROM orders.orders WHERE status <> 'rejected'")
        .await;
    assert!(orders > 30, "the run placed orders ({orders})");
    let late = db
        .scalar(
            "SELECT count(*) AS n FROM gateway.ledger g JOIN payments.payments p ON p.id = g.key \
             WHERE g.outcome IN ('charged', 'refunded') AND p.checks > 0",
        )
        .await;
    assert!(late > 0, "no charge was left to the reconciler");
}

/// xorshift64: a seeded, reproducible sequence.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
