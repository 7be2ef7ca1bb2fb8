//! Database outages: failure answers against a Postgres the test stops, crashes and
//! starts, and recovery without a restart.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emporium::{Config, Hooks};
use kernel::testing::TestDatabase;
use serde_json::json;

use crate::{spawn_with, wait_for};

/// A private Postgres cluster of this test's own, removed when dropped.
struct OwnPostgres(pgcluster::Cluster);

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self.0.remove();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_then_recovers_without_a_restart() {
    let base = std::env::temp_dir().join(format!("emporium-outage-{}", std::process::id()));
    let postgres = OwnPostgres(pgcluster::Cluster::new(base).expect("PostgreSQL binaries"));
    let port = postgres.0.start().expect("private Postgres starts");
    let url = format!("postgres://postgres@127.0.0.1:{port}/emporium");
    let db = TestDatabase {
        url: url.clone(),
        name: "emporium".into(),
    };
    let app = spawn_with(db, Config::for_database, Hooks::default()).await;
    let user = app.user("outage@example.com").await;
    let before = app.as_user(&user).get(&format!("/users/{user}")).await;
    assert_eq!(before.status, 200);

    postgres.0.stop().expect("stop Postgres");
    let started = Instant::now();
    let down = app.as_user(&user).get(&format!("/users/{user}")).await;
    down.assert_problem(503, "service_unavailable");
    assert_eq!(down.header("retry-after"), Some("1"));
    let write = app
        .http
        .post(
            "/users",
            json!({"email": "during@example.com", "name": "During", "password": crate::PASSWORD}),
        )
        .await;
    write.assert_problem(503, "service_unavailable");
    app.http
        .get("/health/ready")
        .await
        .assert_problem(503, "service_unavailable");
    assert_eq!(
        app.http.get("/health/live").await.status,
        200,
        "the process itself lives on"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answers came within a bounded wait"
    );
    let body = serde_json::to_string(&down.body).unwrap();
    assert!(
        !body.contains("127.0.0.1") && !body.contains("postgres://"),
        "no connection details leak: {body}"
    );

    postgres.0.start().expect("restart Postgres");
    wait_for("ready again", async || {
        app.http.get("/health/ready").await.status == 200
    })
    .await;
    assert_eq!(
        app.as_user(&user).get(&format!("/users/{user}")).await.body,
        before.body
    );
    // Event delivery survived the outage: a new order reaches the read model.
    let product = app.product("After outage", "1.00", 3).await;
    let order = app.placed(&user, &[(&product, 1)]).await;
    // Polled with a deadline: the delivery loop may still be in its backoff (at most 5 s)
    // from the outage when the order is placed, longer than one read-your-writes wait.
    wait_for("the new order in the read model", async || {
        let view = app
            .http
            .get(&format!("/queries/orders/{order}?min_version=1"))
            .await;
        (view.status, view.header("x-read-model-stale")) == (200, None)
    })
    .await;
}

/// Requests in flight when Postgres crashes lose their connection mid-query: each such
/// cause (the socket closed, the server gone) is `503`, never `500`, on every kind of route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_under_traffic_answers_503_never_500() {
    kernel::testing::init_logs();
    let base = std::env::temp_dir().join(format!("emporium-crash-{}", std::process::id()));
    let postgres = OwnPostgres(pgcluster::Cluster::new(base).expect("PostgreSQL binaries"));
    let port = postgres.0.start().expect("private Postgres starts");
    let url = format!("postgres://postgres@127.0.0.1:{port}/emporium");
    let db = TestDatabase {
        url: url.clone(),
        name: "emporium".into(),
    };
    let app = Arc::new(spawn_with(db, Config::for_database, Hooks::default()).await);
    let user = app.user("crash@example.com").await;
    let product = app.product("Crash", "1.00", 1_000_000).await;

    // Clients cycle through a mix of reads and writes until told to stop; every answer is
    // counted by route and status.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(BTreeMap::<(&'static str, u16), u32>::new()));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (app, stop, seen) = (app.clone(), stop.clone(), seen.clone());
            let (user, product) = (user.clone(), product.clone());
            tokio::spawn(async move {
                let mut last_order: Option<String> = None;
                let mut n = client;
                while !stop.load(Ordering::Relaxed) {
                    let (route, answer) = match n % 6 {
                        0 => (
                            "list orders",
                            app.http
                                .get(&format!("/queries/orders?user_id={user}"))
                                .await,
                        ),
                        1 => (
                            "get product",
                            app.http.get(&format!("/products/{product}")).await,
                        ),
                        2 => {
                            let answer = app.order(&user, &[(&product, 1)]).await;
                            if answer.status == 202 {
                                last_order = answer.body["order_id"].as_str().map(str::to_owned);
                            }
                            ("place", answer)
                        }
                        3 => (
                            "restock",
                            app.http
                                .post(
                                    &format!("/products/{product}/restock"),
                                    json!({"quantity": 1}),
                                )
                                .await,
                        ),
                        4 => (
                            "rename",
                            app.as_user(&user)
                                .patch(&format!("/users/{user}"), json!({"name": format!("N{n}")}))
                                .await,
                        ),
                        _ => match last_order.take() {
                            Some(order) if n % 12 == 5 => (
                                "confirm",
                                app.command(
                                    &order,
                                    "confirm",
                                    json!({"payment_token": "tok_visa"}),
                                )
                                .await,
                            ),
                            Some(order) => (
                                "cancel",
                                app.command(&order, "cancel", json!({"reason": "crash test"}))
                                    .await,
                            ),
                            None => {
                                n += 1;
                                continue;
                            }
                        },
                    };
                    if answer.status == 504 {
                        // The payment was recorded and the gateway asked, then the database
                        // went away before the outcome was: the payment stays pending for
                        // the reconciler, and the client is told not to pay again.
                        assert_eq!(route, "confirm", "only a confirm waits on a payment");
                        answer.assert_problem(504, "payment_pending");
                    }
                    if answer.status == 503 {
                        answer.assert_problem(503, "service_unavailable");
                        assert_eq!(answer.header("retry-after"), Some("1"), "{route}");
                        // Retry soon, not at once: the outage is short and the cores few.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    *seen
                        .lock()
                        .unwrap()
                        .entry((route, answer.status))
                        .or_default() += 1;
                    n += 1;
                }
            })
        })
        .collect();

    // A few crashes, each while the clients are busy, each followed by a restart and a
    // recovery; a crash in the middle of a query is what a single one may miss.
    let started = Instant::now();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        tokio::task::block_in_place(|| postgres.0.crash()).expect("crash Postgres");
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::task::block_in_place(|| postgres.0.start()).expect("restart Postgres");
        wait_for("ready after the crash", async || {
            app.http.get("/health/ready").await.status == 200
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("a client failed");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "crashes and recoveries took {:?}",
        started.elapsed()
    );

    let seen = seen.lock().unwrap().clone();
    let count = |status: u16| -> u32 {
        seen.iter()
            .filter(|((_, s), _)| *s == status)
            .map(|(_, n)| n)
            .sum()
    };
    eprintln!("answers by (route, status): {seen:?}");
    assert_eq!(count(500), 0, "500s among {seen:?}");
    assert!(count(503) > 0, "no request met the outage: {seen:?}");
    assert!(
        seen.keys()
            .all(|(route, status)| matches!(status, 200 | 202 | 409 | 503)
                || (*route == "confirm" && *status == 504)),
        "unexpected answers among {seen:?}"
    );
}
