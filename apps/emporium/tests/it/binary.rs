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
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn bad_configuration_fails_with_a_clear_message() {
    let out = Command::new(BIN)
        .args(["migrate", "--order-expiry", "soon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid duration"));
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

/// A log search by request id shows the request's whole path through the modules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_the_request_id_through_every_module_call() {
    let db = crate::database().await;
    let port = free_port();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let user = http
        .post(
            "/users",
            serde_json::json!({"email": "log@example.com", "name": "Log"}),
        )
        .await
        .body;
    let product = http
        .post(
            "/products",
            serde_json::json!({"name": "Log", "price": "1", "stock": 2}),
        )
        .await
        .body;
    let body = serde_json::json!({"user_id": user["id"], "items": [{"product_id": product["id"], "quantity": 1}]});
    let placed = http
        .client
        .post(format!("{}/commands/orders", http.base))
        .header("X-Request-Id", "trace-me-please")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 202);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut text).unwrap();
        child.wait().unwrap();
        text
    })
    .await
    .unwrap();
    let spans: Vec<String> = output
        .lines()
        .filter(|line| line.contains("trace-me-please"))
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|entry| entry["span"]["name"].as_str().map(str::to_owned))
        .collect();
    for module_call in [
        "users.get",
        "products.lookup",
        "products.reserve",
        "orders.place",
        "request",
    ] {
        assert!(
            spans.iter().any(|s| s == module_call),
            "no {module_call} line with the request id in {spans:?}"
        );
    }
}
