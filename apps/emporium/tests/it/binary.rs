//! The `emporium` binary itself: flags, `migrate`, serving, and graceful shutdown.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_emporium");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn help_lists_every_flag() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "serve",
        "migrate",
        "--database-url",
        "DATABASE_URL",
        "READ_DATABASE_URL",
        "HTTP_ADDR",
        "ADMIN_TOKEN",
        "ORDER_EXPIRY",
        "LOG_FORMAT",
        "LOG_SPANS",
        "ACCESS_TOKEN_TTL",
        "REFRESH_TOKEN_TTL",
        "AUTH_SIGNING_KEY_FILE",
        "LOGIN_LOCK_WINDOW",
        "CORS_ALLOWED_ORIGINS",
        "CATALOG_MAX_AGE",
        "NATS_URL",
        "users",
        "keys",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn bad_configuration_fails_with_a_clear_message() {
    let cases = [
        ("--order-expiry", "soon", "invalid duration"),
        ("--catalog-max-age", "a while", "invalid duration"),
        (
            "--cors-allowed-origins",
            "https://shop.example,https://shop.example/",
            "an origin has no path",
        ),
    ];
    for (flag, value, message) in cases {
        let out = Command::new(BIN)
            .args(["migrate", flag, value])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{flag} {value}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_then_sigterm_exits_zero() {
    let db = kernel::testing::database(&emporium::SCHEMAS).await;
    let port = free_port();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = kernel::testing::Http::new(format!("http://127.0.0.1:{port}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let probe = http
            .client
            .get(format!("{}/health/ready", http.base))
            .send();
        if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(1), probe).await
            && response.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "server never became ready");
        assert!(child.try_wait().unwrap().is_none(), "server exited early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "server did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_subcommand_exits_zero() {
    let db = kernel::testing::database(&emporium::SCHEMAS).await;
    let out = Command::new(BIN)
        .args(["migrate", "--schema", "products"])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["migrate", "--schema", "orders-typo"])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown schema"));
    // The old spelling of the flag still works.
    let out = Command::new(BIN)
        .args(["migrate", "--module", "users"])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With `LOG_SPANS`, a log search by request id shows the request's whole path through
/// the modules: a line as each module call's span closes, with its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_log_spans_logs_carry_the_request_id_through_every_module_call() {
    let db = crate::database().await;
    let (served, http) = serve_logging(&db, &[("RUST_LOG", "info"), ("LOG_SPANS", "1")]).await;
    let user = http
        .post(
            "/users",
            serde_json::json!({"email": "log@example.com", "name": "Log", "password": crate::PASSWORD}),
        )
        .await
        .body;
    // The user keeps the catalog too, and calls with their token.
    emporium::grant(
        &emporium::Config::for_database(&db.url),
        "log@example.com",
        &[kernel::Role::Catalog],
    )
    .await
    .unwrap();
    let login = http
        .post(
            "/auth/token",
            serde_json::json!({"grant_type": "password", "email": "log@example.com", "password": crate::PASSWORD}),
        )
        .await;
    let http = http.with_bearer(login.body["access_token"].as_str().unwrap());
    let product = http
        .post(
            "/products",
            serde_json::json!({"name": "Log", "price": "1", "stock": 2}),
        )
        .await
        .body;
    let body = serde_json::json!({"user_id": user["id"], "items": [{"product_id": product["id"], "quantity": 1}]});
    let placed = http
        .request("POST", "/commands/orders")
        .header("X-Request-Id", "trace-me-please")
        .json(&body)
        .send()
        .await
        .unwrap();
    let output = stop_and_read(served).await;
    assert_eq!(placed.status(), 202);
    let closes: Vec<serde_json::Value> = output
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["request_id"] == "trace-me-please" && entry["message"] == "close")
        .collect();
    assert!(
        closes.iter().all(|entry| entry["time.busy"].is_string()),
        "{closes:?}"
    );
    let spans: Vec<&str> = closes
        .iter()
        .filter_map(|entry| entry["span"].as_str())
        .collect();
    for module_call in [
        "users.get",
        "products.lookup",
        "products.reserve",
        "orders.place",
        "request",
    ] {
        assert!(
            spans.contains(&module_call),
            "no {module_call} line with the request id in {spans:?}"
        );
    }
}

/// A running binary whose stdout and stderr are read as it writes them (a pipe that
/// nobody drains fills, and then the server blocks in the middle of a request).
pub(crate) struct Served {
    child: std::process::Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
}

/// Starts the binary on `db` with JSON logs at `debug`, waits until it answers.
pub(crate) async fn serve_logging(
    db: &kernel::testing::TestDatabase,
    extra: &[(&str, &str)],
) -> (Served, kernel::testing::Http) {
    let port = free_port();
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in extra {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut pipe, &mut text).unwrap();
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let mut served = Served {
        child,
        stdout,
        stderr,
    };
    let http = kernel::testing::Http::new(format!("http://127.0.0.1:{port}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while http
        .client
        .get(format!("{}/health/ready", http.base))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "server never answered");
        if let Some(exit) = served.child.try_wait().unwrap() {
            panic!("server exited ({exit}): {}", served.stderr.join().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (served, http)
}

/// SIGTERM, then everything the process wrote.
pub(crate) async fn stop_and_read(served: Served) -> String {
    let (stdout, stderr) = stop_and_read_apart(served).await;
    stdout + &stderr
}

/// SIGTERM, then what the process wrote to stdout (the log) and to stderr.
pub(crate) async fn stop_and_read_apart(mut served: Served) -> (String, String) {
    Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    tokio::task::spawn_blocking(move || {
        served.child.wait().unwrap();
        (served.stdout.join().unwrap(), served.stderr.join().unwrap())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_or_token_reaches_the_logs_or_the_events() {
    use serde_json::json;
    let db = crate::database().await;
    let admin_token = "log-test-admin-token-42";
    let (served, http) = serve_logging(&db, &[("ADMIN_TOKEN", admin_token)]).await;
    let (password, new_password) = ("first secret password", "second secret password");
    let user = http
        .post(
            "/users",
            json!({"email": "leak@example.com", "name": "Leak", "password": password}),
        )
        .await
        .body;
    let id = user["id"].as_str().unwrap();
    let login = |password: &str| {
        let (http, password) = (http.clone(), password.to_owned());
        async move {
            http.post(
                "/auth/token",
                json!({"grant_type": "password", "email": "leak@example.com", "password": password}),
            )
            .await
        }
    };
    assert_eq!(login("a wrong password").await.status, 401);
    let pair = login(password).await.body;
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let refresh = pair["refresh_token"].as_str().unwrap().to_owned();
    let me = http.with_bearer(&access);
    assert_eq!(me.get("/users/me").await.status, 200);
    let changed = me
        .patch(
            &format!("/users/{id}"),
            json!({"password": new_password, "current_password": password}),
        )
        .await;
    assert_eq!(changed.status, 200);
    let granted = http
        .with_bearer(admin_token)
        .put(&format!("/users/{id}/roles"), json!({"roles": ["support"]}))
        .await;
    assert_eq!(granted.status, 200);
    let second = login(new_password).await.body;
    let refreshed = http
        .post(
            "/auth/token",
            json!({"grant_type": "refresh_token", "refresh_token": second["refresh_token"]}),
        )
        .await;
    assert_eq!(refreshed.status, 200);
    http.post("/auth/revoke", json!({"refresh_token": refresh}))
        .await;
    http.with_bearer(&format!("{access}x"))
        .get("/users/me")
        .await;
    let logs = stop_and_read(served).await;
    assert!(logs.contains("logged in"), "the logs were captured: {logs}");

    #[derive(diesel::QueryableByName)]
    struct Payload {
        #[diesel(sql_type = diesel::sql_types::Text)]
        payload: String,
    }
    use diesel_async::RunQueryDsl;
    let events: Vec<Payload> =
        diesel::sql_query("SELECT payload::text AS payload FROM users.events")
            .load(&mut db.connect().await)
            .await
            .unwrap();
    assert!(!events.is_empty());
    let second_access = second["access_token"].as_str().unwrap();
    let second_refresh = second["refresh_token"].as_str().unwrap();
    let texts = std::iter::once(logs).chain(events.into_iter().map(|e| e.payload));
    let secrets = [
        password,
        new_password,
        "$argon2",
        admin_token,
        &access,
        &refresh,
        second_access,
        second_refresh,
    ];
    for text in texts {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret:?} leaked:\n{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_grant_and_keys_rotate_work_on_the_database() {
    use serde_json::json;
    let db = crate::database().await;
    let (served, http) = serve_logging(&db, &[]).await;
    let registered = http
        .post(
            "/users",
            json!({"email": "boss@example.com", "name": "Boss", "password": crate::PASSWORD}),
        )
        .await;
    assert_eq!(registered.status, 201);
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("DATABASE_URL", &db.url)
            .output()
            .unwrap()
    };
    let cases: [(&[&str], bool); 4] = [
        (
            &["users", "grant", "Boss@example.com", "admin", "support"],
            true,
        ),
        (&["users", "grant", "nobody@example.com", "admin"], false),
        (&["users", "grant", "boss@example.com", "wizard"], false),
        (&["users", "grant", "boss@example.com"], false),
    ];
    for (args, ok) in cases {
        let out = run(args);
        assert_eq!(
            out.status.success(),
            ok,
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let login = || {
        let http = http.clone();
        async move {
            let body = json!({"grant_type": "password", "email": "boss@example.com",
                "password": crate::PASSWORD});
            http.post("/auth/token", body).await.body["access_token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let me = http.with_bearer(&login().await).get("/users/me").await;
    assert_eq!(me.body["roles"], json!(["support", "admin"]));

    let out = run(&["keys", "rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwks = http.get("/.well-known/jwks.json").await.body;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    let token = login().await;
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], jwks["keys"][0]["kid"], "the new key signs");
    assert_eq!(http.with_bearer(&token).get("/users/me").await.status, 200);
    stop_and_read(served).await;
}
