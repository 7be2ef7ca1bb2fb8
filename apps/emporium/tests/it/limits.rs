//! The contract's Limits, through HTTP: a request has a deadline, and a client that
//! sends its request slowly cannot hold the server.

use std::time::{Duration, Instant};

use emporium::{Config, Hooks};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{database, spawn_with};

async fn app_with_deadline(deadline: Duration) -> crate::TestApp {
    let config = move |url: &str| Config {
        request_timeout: deadline,
        ..Config::for_database(url)
    };
    spawn_with(database().await, config, Hooks::default()).await
}

/// A request still running at `REQUEST_TIMEOUT` is abandoned and answered `503
/// request_timeout` with `Retry-After` (here a read-your-writes wait, which alone would
/// wait 2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_is_abandoned_with_503() {
    let app = app_with_deadline(Duration::from_millis(300)).await;
    let started = Instant::now();
    let unknown = kernel::OrderId::generate();
    let answer = app
        .http
        .get(&format!("/queries/orders/{unknown}?min_version=1"))
        .await;
    let elapsed = started.elapsed();
    answer.assert_problem(503, "request_timeout");
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert!(
        elapsed < Duration::from_millis(1500),
        "answered after {elapsed:?}"
    );
    let health = app.http.get("/health/live").await;
    assert_eq!(health.status, 200, "the worker serves on");
}

/// Opens a raw connection to the app.
async fn connect(app: &crate::TestApp) -> tokio::net::TcpStream {
    let address = app.http.base.trim_start_matches("http://");
    tokio::net::TcpStream::connect(address).await.unwrap()
}

/// Reads until the server closes the connection (at most `limit`); what it sent.
async fn until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection stayed open for {limit:?}");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A client that never finishes its request head is answered `408` and cut off after
/// `CLIENT_REQUEST_TIMEOUT`; one that never finishes its body is abandoned at the
/// request's deadline. Neither holds a worker: the server answers others meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off() {
    let app = app_with_deadline(Duration::from_millis(500)).await;
    let mut head = connect(&app).await;
    head.write_all(b"GET /health/live HTTP/1.1\r\nHost: emporium\r\n")
        .await
        .unwrap();
    let mut body = connect(&app).await;
    body.write_all(
        b"POST /users HTTP/1.1\r\nHost: emporium\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{\"email\": ",
    )
    .await
    .unwrap();
    let started = Instant::now();
    assert_eq!(app.http.get("/health/live").await.status, 200);

    let answer = until_closed(&mut body, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    let answer = until_closed(&mut head, emporium::CLIENT_REQUEST_TIMEOUT * 2).await;
    let elapsed = started.elapsed();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(
        elapsed >= emporium::CLIENT_REQUEST_TIMEOUT - Duration::from_millis(500),
        "cut off after {elapsed:?}, before its time"
    );
    let users = app.db.scalar("SELECT count(*) AS n FROM users.users").await;
    assert_eq!(users, 1, "only the staff member; nothing half-written");
}

/// Whether a backend is running a read-model query right now (the waiters' lookups).
async fn reading(app: &crate::TestApp) -> bool {
    let sql = format!(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{}' AND state = 'active' \
         AND query LIKE '%orders_read%' AND query NOT LIKE '%pg_stat_activity%'",
        app.db.name
    );
    app.db.scalar(&sql).await > 0
}

/// `min_version` waiters hold no connection and run no query while they wait (looked
/// for again and again while 200 wait), and all see the projection's move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_waiters_sleep_until_the_projection_moves() {
    let app = std::sync::Arc::new(crate::spawn_app().await);
    let user = app.user("waiter@example.com").await;
    let product = app.product("Lamp", "3.00", 10).await;
    let order = app.placed(&user, &[(&product, 1)]).await;
    let path = format!("/queries/orders/{order}?min_version=");
    assert_eq!(app.http.get(&format!("{path}1")).await.status, 200);

    let waiters: Vec<_> = (0..200)
        .map(|_| {
            let (http, path) = (app.http.clone(), format!("{path}2"));
            tokio::spawn(async move {
                let answer = http.get(&path).await;
                (answer.status, answer.header("x-read-model-stale").is_none())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A look every few milliseconds for 400 ms (before the waiters' 1 s fallback look),
    // then the move, which leaves the waiters more than a second of their 2 s.
    let (mut busy, mut looks) = (0, 0);
    let window = Instant::now();
    while window.elapsed() < Duration::from_millis(400) {
        looks += 1;
        if reading(&app).await {
            busy += 1;
        }
    }
    assert!(
        busy * 20 <= looks,
        "a read-model query ran in {busy} of {looks} looks while the waiters waited"
    );
    let confirmed = app
        .command(&order, "confirm", json!({"payment_token": "tok_visa"}))
        .await;
    assert_eq!(confirmed.status, 202, "{:#}", confirmed.body);
    for waiter in waiters {
        let (status, fresh) = waiter.await.unwrap();
        assert_eq!((status, fresh), (200, true), "every waiter saw version 2");
    }
}

/// Beyond `MAX_READ_WAITERS` waiting at once, a `min_version` read is answered at once
/// with what the read model holds (stale), instead of waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_waiters_bound_a_read_answers_at_once() {
    let config = |url: &str| Config {
        max_read_waiters: 5,
        ..Config::for_database(url)
    };
    let app = std::sync::Arc::new(spawn_with(database().await, config, Hooks::default()).await);
    let user = app.user("bound@example.com").await;
    let product = app.product("Lamp", "3.00", 10).await;
    let order = app.placed(&user, &[(&product, 1)]).await;
    let path = format!("/queries/orders/{order}?min_version=");
    assert_eq!(app.http.get(&format!("{path}1")).await.status, 200);
    let waiting: Vec<_> = (0..5)
        .map(|_| {
            let (http, path) = (app.http.clone(), format!("{path}2"));
            tokio::spawn(async move { http.get(&path).await.status })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let sixth = app.http.get(&format!("{path}2")).await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(sixth.status, 200);
    assert_eq!(sixth.header("x-read-model-stale"), Some("true"));
    assert_eq!(sixth.body["version"], 1);
    for waiter in waiting {
        assert_eq!(waiter.await.unwrap(), 200, "the five waited out their 2 s");
    }
}

/// `/health/ready` answers on a connection of its own: with every connection of the read
/// model's pool held by requests that wait on a lock, the process is still ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_does_not_flap_when_the_pools_are_busy() {
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    let app = std::sync::Arc::new(crate::spawn_app().await);
    let mut locker = app.db.connect().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE orders_read.orders IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let blocked: Vec<_> = (0..6)
        .map(|_| {
            let http = app.http.clone();
            tokio::spawn(async move { http.get("/queries/orders").await.status })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let ready = app.http.get("/health/ready").await;
    assert_eq!(ready.status, 200, "{:#}", ready.body);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    diesel::sql_query("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    for request in blocked {
        assert_eq!(request.await.unwrap(), 200, "served once the lock is gone");
    }
}

/// A client cannot create metric series: a made-up method is counted as `other`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_fold_into_one_metric_label() {
    let app = crate::spawn_app().await;
    let brewed = app.http.raw("BREW", "/health/live", None, Vec::new()).await;
    assert_eq!(brewed.status, 405);
    let metrics = app.http.get("/metrics").await;
    let text = metrics.body.as_str().unwrap();
    assert!(!text.contains("BREW"), "a series per made-up method");
    assert!(text.contains("method=\"other\""), "{text}");
}

/// The users module's purger runs every `PURGE_INTERVAL`: expired refresh tokens and
/// failed logins older than the lock window leave their tables by themselves (with the
/// default hour, they would still be there when the wait gives up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purger_runs_every_purge_interval() {
    let config = |url: &str| Config {
        purge_interval: Duration::from_millis(200),
        refresh_token_ttl: Duration::from_secs(2),
        login_lock_window: Duration::from_secs(2),
        ..Config::for_database(url)
    };
    let app = spawn_with(database().await, config, Hooks::default()).await;
    app.user("purged@example.com").await;
    let wrong =
        json!({"grant_type": "password", "email": "purged@example.com", "password": "not it"});
    let failed = app.http.anonymous().post("/auth/token", wrong).await;
    failed.assert_problem(401, "invalid_credentials");
    let rows = async || {
        app.db
            .scalar("SELECT count(*) AS n FROM users.refresh_tokens")
            .await
            + app
                .db
                .scalar("SELECT count(*) AS n FROM users.login_failures")
                .await
    };
    assert!(
        rows().await >= 2,
        "a refresh token and a failed login were stored"
    );
    crate::wait_for("the purger has deleted them", async || rows().await == 0).await;
}
