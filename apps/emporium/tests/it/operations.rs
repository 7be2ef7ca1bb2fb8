//! Operating emporium: failure answers against a Postgres the test stops and starts,
//! panics, request ids, admin auth and projection status, metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emporium::{Config, Hooks};
use kernel::testing::TestDatabase;
use serde_json::json;

use crate::{database, spawn_app, spawn_on, spawn_with};

/// A private Postgres cluster of this test's own, removed when dropped.
struct OwnPostgres(pgcluster::Cluster);

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self.0.remove();
    }
}

async fn wait_for(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
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
    let before = app.http.get(&format!("/users/{user}")).await;
    assert_eq!(before.status, 200);

    postgres.0.stop().expect("stop Postgres");
    let started = Instant::now();
    let down = app.http.get(&format!("/users/{user}")).await;
    down.assert_problem(503, "service_unavailable");
    assert_eq!(down.header("retry-after"), Some("1"));
    let write = app
        .http
        .post(
            "/users",
            json!({"email": "during@example.com", "name": "During"}),
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
        app.http.get(&format!("/users/{user}")).await.body,
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
                            app.http
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
            .all(|(_, status)| matches!(status, 200 | 202 | 409 | 503)),
        "unexpected answers among {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_answered_500_and_the_worker_lives_on() {
    let panic_after_charge: ::orders::FaultHook = Arc::new(|point| {
        if point == "after_charge" {
            panic!("injected panic at {point}")
        } else {
            Ok(())
        }
    });
    let app = spawn_on(
        database().await,
        Hooks {
            faults: Some(panic_after_charge),
            ..Hooks::default()
        },
    )
    .await;
    let user = app.user("panic@example.com").await;
    let product = app.product("Glass", "3.00", 5).await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(app.placed(&user, &[(&product, 1)]).await);
    }
    for order in &orders {
        let answer = app
            .command(order, "confirm", json!({"payment_token": "tok_visa"}))
            .await;
        let problem = answer.assert_problem(500, "internal_error");
        assert!(
            problem["detail"].as_str().unwrap().contains("request id"),
            "{problem}"
        );
        assert!(
            !problem.to_string().contains("injected"),
            "the panic message stays in the log"
        );
    }
    for _ in 0..20 {
        assert_eq!(
            app.http.get(&format!("/users/{user}")).await.status,
            200,
            "both workers still serve"
        );
    }
    // The charge went through before the panic; the saga confirms the order (two hops
    // through the event log, so polled with a deadline rather than one 2 s wait).
    wait_for("the saga to confirm the order", async || {
        let view = app
            .http
            .get(&format!("/queries/orders/{}?min_version=2", orders[0]))
            .await;
        view.body["status"] == "confirmed"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let send = |id: Option<&'static str>| {
        let http = app.http.clone();
        async move {
            let mut request = http.client.get(format!("{}/health/live", http.base));
            if let Some(id) = id {
                request = request.header("X-Request-Id", id);
            }
            let response = request.send().await.unwrap();
            response
                .headers()
                .get("x-request-id")
                .map(|v| v.to_str().unwrap().to_owned())
        }
    };
    assert_eq!(
        send(Some("checkout-42")).await.as_deref(),
        Some("checkout-42"),
        "an incoming id is honoured"
    );
    let generated = send(None).await.expect("an id is generated");
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    let replaced = send(Some("bad id with spaces")).await.unwrap();
    assert_ne!(replaced, "bad id with spaces", "an unusable id is replaced");
    let problem = app.http.get("/nowhere").await;
    assert!(
        problem.header("x-request-id").is_some(),
        "problem answers carry it too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_the_token() {
    let disabled = spawn_app().await;
    let answer = disabled.http.get("/admin/projections").await;
    assert!(
        answer.assert_problem(403, "admin_disabled")["detail"]
            .as_str()
            .unwrap()
            .contains("ADMIN_TOKEN")
    );

    let app = spawn_with(
        database().await,
        |url| Config {
            admin_token: Some("s3cret-token".into()),
            ..Config::for_database(url)
        },
        Hooks::default(),
    )
    .await;
    let get = |auth: Option<&'static str>| {
        let http = app.http.clone();
        async move {
            let mut request = http.client.get(format!("{}/admin/projections", http.base));
            if let Some(auth) = auth {
                request = request.header("Authorization", auth);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let challenge = response.headers().get("www-authenticate").is_some();
            (
                status,
                challenge,
                response.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cret-tokenX"),
        Some("s3cret-token"),
        Some("Basic czNjcmV0"),
    ] {
        let (status, challenge, body) = get(auth).await;
        assert_eq!(
            (status, challenge, body["code"].as_str()),
            (401, true, Some("unauthorized")),
            "{auth:?}"
        );
    }
    let user = app.user("admin@example.com").await;
    let product = app.product("Admin", "1.00", 5).await;
    let order = app.placed(&user, &[(&product, 1)]).await;
    app.http
        .get(&format!("/queries/orders/{order}?min_version=1"))
        .await;
    let (status, _, body) = get(Some("Bearer s3cret-token")).await;
    assert_eq!(status, 200, "{body}");
    let projections = body["projections"].as_array().unwrap();
    let names: Vec<&str> = projections
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orders_read", "orders_saga"]);
    let read = &projections[0];
    for field in ["position", "head", "lag_events", "lag_seconds", "status"] {
        assert!(read.get(field).is_some(), "{field} missing in {read}");
    }
    assert!(
        read["head"].as_i64().unwrap() >= 3,
        "user, product and order events: {read}"
    );
    assert_eq!(read["status"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_speak_prometheus() {
    let app = spawn_app().await;
    let user = app.user("metrics@example.com").await;
    let product = app.product("Metric", "1.00", 5).await;
    let order = app.placed(&user, &[(&product, 1)]).await;
    app.http
        .get(&format!("/queries/orders/{order}?min_version=1"))
        .await;
    app.http.get(&format!("/users/{user}")).await;
    let answer = app
        .http
        .client
        .get(format!("{}/metrics", app.http.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = answer.text().await.unwrap();
    for expected in [
        r#"http_requests_total{method="POST",route="/users",status="201"}"#,
        r#"http_request_duration_seconds_bucket{method="GET",route="/users/{id}",le="0.005"}"#,
        r#"command_duration_seconds_count{command="place",outcome="ok"}"#,
        r#"query_duration_seconds_count{query="get_order",outcome="ok"}"#,
        r#"projection_lag_events{projection="orders_read"}"#,
        r#"projection_lag_seconds{projection="orders_saga"}"#,
        r#"event_log_backlog{module="orders"}"#,
        r#"dead_letters{subscriber="orders_read"}"#,
        r#"db_pool_connections{module="users",state="max"}"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    assert!(!text.contains(&user), "raw paths never become labels");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_replays_the_log_into_a_fresh_read_model_while_queries_answer() {
    let app = spawn_with(
        database().await,
        |url| Config {
            admin_token: Some("t0ken".into()),
            ..Config::for_database(url)
        },
        Hooks::default(),
    )
    .await;
    let admin = |method: &'static str, path: String| {
        let http = app.http.clone();
        async move {
            let url = format!("{}{path}", http.base);
            let request = if method == "POST" {
                http.client.post(url)
            } else {
                http.client.get(url)
            };
            let response = request
                .header("Authorization", "Bearer t0ken")
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let user = app.user("rebuild@example.com").await;
    let product = app.product("Rebuilt", "2.50", 100).await;
    let mut orders = Vec::new();
    for i in 0..12 {
        let order = app.placed(&user, &[(&product, 1 + i % 3)]).await;
        match i % 4 {
            0 => drop(
                app.command(&order, "confirm", json!({"payment_token": "tok_visa"}))
                    .await,
            ),
            1 => drop(app.command(&order, "cancel", json!({"reason": "no"})).await),
            _ => {}
        }
        orders.push(order);
    }
    app.http
        .patch(
            &format!("/users/{user}"),
            json!({"name": "Renamed before rebuild"}),
        )
        .await;
    crate::invariants::assert_hold(&app.db).await;
    let before = app
        .http
        .get(&format!("/queries/orders?user_id={user}&page_size=100"))
        .await
        .body;

    // Damage the live read model behind the projection's back: only a replay from the
    // event log into a fresh copy repairs it.
    app.db.scalar("WITH c AS (UPDATE orders_read.orders SET user_name = 'CORRUPT', status = 'pending' RETURNING 1) SELECT count(*) AS n FROM c").await;
    assert_ne!(
        app.http
            .get(&format!("/queries/orders?user_id={user}&page_size=100"))
            .await
            .body,
        before
    );

    let (status, started) = admin("POST", "/admin/projections/orders_read/rebuild".into()).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(
        (
            started["projection"].as_str(),
            started["generation"].as_i64()
        ),
        (Some("orders_read"), Some(2))
    );
    assert_eq!(
        admin("POST", "/admin/projections/orders_saga/rebuild".into())
            .await
            .0,
        409
    );
    assert_eq!(
        admin("POST", "/admin/projections/nope/rebuild".into())
            .await
            .0,
        404
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Queries keep answering during the rebuild.
        assert_eq!(
            app.http
                .get(&format!("/queries/orders?user_id={user}"))
                .await
                .status,
            200
        );
        let (_, status) = admin("GET", "/admin/projections".into()).await;
        let read = &status["projections"][0];
        if read["status"] == "running" && read.get("rebuild").is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rebuild never finished: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let live = app
        .db
        .scalar("SELECT id::bigint AS n FROM orders_read.generations WHERE state = 'live'")
        .await;
    assert_eq!(live, 2, "the new generation took over");
    let generations = app
        .db
        .scalar("SELECT count(*) AS n FROM orders_read.generations")
        .await;
    assert_eq!(generations, 1, "the old generation was retired and deleted");
    assert_eq!(
        app.http
            .get(&format!("/queries/orders?user_id={user}&page_size=100"))
            .await
            .body,
        before,
        "repaired"
    );
    crate::invariants::assert_hold(&app.db).await;

    // The live projection carries on from where the rebuild stopped.
    let after = app.placed(&user, &[(&product, 1)]).await;
    // Polled with a deadline: right after the switch the live delivery task may still be
    // waiting out a busy subscriber lock or a backoff, longer than one 2 s wait.
    let mut view = None;
    wait_for("the live projection to carry on", async || {
        let answer = app
            .http
            .get(&format!("/queries/orders/{after}?min_version=1"))
            .await;
        let fresh = (answer.status, answer.header("x-read-model-stale")) == (200, None);
        view = Some(answer);
        fresh
    })
    .await;
    let view = view.expect("polled at least once");
    assert_eq!(view.body["user_name"], "Renamed before rebuild");
    crate::invariants::assert_hold(&app.db).await;
}
