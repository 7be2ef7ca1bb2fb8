//! `/metrics`: Prometheus text that `promtool check metrics` accepts, every family named
//! `emporium_*` (or the standard `process_*`) and described, labels bounded.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::spawn_app;

/// The families of `text` (the names of its `# TYPE` lines) and those with a `# HELP`.
fn families(text: &str) -> (BTreeSet<&str>, BTreeSet<&str>) {
    let named = |prefix: &str| -> BTreeSet<&str> {
        text.lines()
            .filter_map(|line| line.strip_prefix(prefix))
            .filter_map(|rest| rest.split_whitespace().next())
            .collect()
    };
    (named("# TYPE "), named("# HELP "))
}

/// An app that has answered a bit of everything, and its `/metrics`; the ids it made.
async fn scraped() -> (String, Vec<String>) {
    let app = spawn_app().await;
    let user = app.user("metrics@example.com").await;
    let product = app.product("Metric", "1.00", 5).await;
    let order = app.placed(&user, &[(&product, 1)]).await;
    app.http
        .get(&format!("/queries/orders/{order}?min_version=1"))
        .await;
    app.as_user(&user).get(&format!("/users/{user}")).await;
    let stray = uuid::Uuid::now_v7().to_string();
    let unknown = app.http.get(&format!("/no/such/{stray}")).await;
    assert_eq!(unknown.status, 404);
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
    (
        answer.text().await.unwrap(),
        vec![user, product, order, stray],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_speak_prometheus() {
    let (text, ids) = scraped().await;
    for expected in [
        r#"emporium_http_requests_total{method="POST",route="/users",status="201"}"#,
        r#"emporium_http_requests_total{method="GET",route="unmatched",status="404"}"#,
        r#"emporium_http_request_duration_seconds_bucket{method="GET",route="/users/{id}",le="0.005"}"#,
        r#"emporium_command_duration_seconds_count{command="place",outcome="ok"}"#,
        r#"emporium_query_duration_seconds_count{query="get_order",outcome="ok"}"#,
        r#"emporium_projection_lag_events{projection="orders_read"}"#,
        r#"emporium_projection_lag_seconds{projection="orders_saga"}"#,
        r#"emporium_event_log_backlog{module="orders"}"#,
        r#"emporium_dead_letters{subscriber="orders_read"}"#,
        r#"emporium_db_pool_connections{module="users",state="in_use"}"#,
        r#"emporium_db_pool_connections{module="users",state="idle"}"#,
        r#"emporium_db_pool_max_connections{module="users"}"#,
        r#"emporium_db_pool_waiting{module="orders.events"}"#,
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
        &format!(
            r#"emporium_build_info{{version="{}",commit="#,
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    let info = text
        .lines()
        .find(|l| l.starts_with("emporium_build_info{"))
        .unwrap();
    assert!(info.ends_with("} 1"), "{info}");
    assert!(!info.contains(r#"commit="""#), "{info}");
    assert!(
        !text.contains(r#"state="max""#),
        "the maximum is no state of a connection"
    );
    for id in ids {
        assert!(!text.contains(&id), "raw paths never become labels: {id}");
    }
    let (typed, described) = families(&text);
    let undescribed: Vec<_> = typed.difference(&described).collect();
    assert!(undescribed.is_empty(), "no HELP for {undescribed:?}");
    let unprefixed: Vec<_> = typed
        .iter()
        .filter(|f| !f.starts_with("emporium_") && !f.starts_with("process_"))
        .collect();
    assert!(unprefixed.is_empty(), "not emporium_*: {unprefixed:?}");
}

/// `promtool`: `PROMTOOL` (which `cargo xtask test` sets, installing it if missing), else
/// the one on `PATH`. Missing, the test fails: it must not pass for want of its checker.
fn promtool() -> PathBuf {
    if let Some(path) = std::env::var_os("PROMTOOL") {
        return path.into();
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("promtool"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool is missing: install Debian's prometheus package \
                 (apt-get install --no-install-recommends prometheus), or run the tests \
                 with `cargo xtask test`, which installs it"
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let (text, _) = scraped().await;
    let promtool = promtool();
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", promtool.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics ({}): {said}\n{text}",
        out.status
    );
}
