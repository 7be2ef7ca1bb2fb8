//! Operating emporium: panics, request ids, admin auth and projection status, rebuilds
//! (metrics: `metrics.rs`; logs: `logs.rs`; database outages: `outages.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use emporium::{Config, Hooks};
use serde_json::json;

use crate::{database, spawn_app, spawn_on, spawn_with, wait_for};

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
            app.as_user(&user)
                .get(&format!("/users/{user}"))
                .await
                .status,
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
    // Without ADMIN_TOKEN, only an admin access token opens /admin.
    let disabled = spawn_app().await;
    let as_admin = disabled.http.get("/admin/projections").await;
    assert_eq!(as_admin.status, 200, "{:#}", as_admin.body);
    disabled
        .http
        .anonymous()
        .with_bearer("anything")
        .get("/admin/projections")
        .await
        .assert_problem(401, "unauthenticated");
    let customer = disabled.user("customer@example.com").await;
    disabled
        .as_user(&customer)
        .get("/admin/projections")
        .await
        .assert_problem(403, "forbidden");

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
            let mut request = http.anonymous().request("GET", "/admin/projections");
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
            (401, true, Some("unauthenticated")),
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
    app.as_user(&user)
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
    // Deleted after the switch, a batch per transaction.
    wait_for("the old generation to be retired and deleted", async || {
        app.db
            .scalar("SELECT count(*) AS n FROM orders_read.generations")
            .await
            == 1
    })
    .await;
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
