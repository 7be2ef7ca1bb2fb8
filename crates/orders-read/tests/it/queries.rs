//! The query side: read-your-writes, lists with filters and pages, and bad parameters.

use std::time::Instant;

use crate::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_waits_then_answers_stale_or_404() {
    let app = spawn_app().await;
    let (user, product) = app.shop();
    let id = app.placed(&user, &product, 1).await;
    let fresh = app
        .http
        .get(&format!("/queries/orders/{id}?min_version=1"))
        .await;
    assert_eq!(
        (fresh.status, fresh.body["version"].as_i64()),
        (200, Some(1))
    );
    assert!(
        fresh
            .header("etag")
            .is_some_and(|t| t.starts_with("W/\"1-")),
        "the version first: {:?}",
        fresh.header("etag")
    );

    let started = Instant::now();
    let stale = app
        .http
        .get(&format!("/queries/orders/{id}?min_version=5"))
        .await;
    let waited = started.elapsed();
    assert_eq!(stale.status, 200);
    assert_eq!(stale.header("x-read-model-stale"), Some("true"));
    assert_eq!(stale.body["version"], 1);
    assert!(
        waited >= orders_read::READ_YOUR_WRITES_WAIT,
        "waited {waited:?} before answering stale"
    );

    let unknown = kernel::OrderId::generate();
    app.http
        .get(&format!("/queries/orders/{unknown}?min_version=1"))
        .await
        .assert_problem(404, "order_not_found");
    app.http
        .get(&format!("/queries/orders/{unknown}"))
        .await
        .assert_problem(404, "order_not_found");
    for bad in ["min_version=-1", "min_version=abc", "version=1"] {
        app.http
            .get(&format!("/queries/orders/{id}?{bad}"))
            .await
            .assert_problem(400, "invalid_query");
    }
    app.http
        .get("/queries/orders/not-an-id")
        .await
        .assert_problem(400, "invalid_path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_filter_by_user_and_status_newest_first() {
    let app = spawn_app().await;
    let (alice, product) = app.shop();
    let bob = kernel::UserId::generate().to_string();
    let mut alices = Vec::new();
    for _ in 0..5 {
        alices.push(app.placed(&alice, &product, 1).await);
    }
    let bobs = app.placed(&bob, &product, 1).await;
    app.cancelled(&alices[1], "no").await;
    app.cancelled(&alices[3], "no").await;
    app.view(&alices[3], 2).await;
    app.view(&bobs, 1).await;

    let all = app.http.get("/queries/orders").await.body;
    assert_eq!(
        (
            all["total"].as_u64(),
            all["page"].as_u64(),
            all["page_size"].as_u64()
        ),
        (Some(6), Some(1), Some(20))
    );
    assert_eq!(all["orders"][0]["id"], bobs.as_str(), "newest first");

    let page = app
        .http
        .get(&format!(
            "/queries/orders?user_id={alice}&page=2&page_size=2"
        ))
        .await
        .body;
    let ids: Vec<&str> = page["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [alices[2].as_str(), alices[1].as_str()]);
    assert_eq!(
        (page["total"].as_u64(), page["total_pages"].as_u64()),
        (Some(5), Some(3))
    );

    let cancelled = app
        .http
        .get(&format!("/queries/orders?user_id={alice}&status=cancelled"))
        .await
        .body;
    let ids: Vec<&str> = cancelled["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [alices[3].as_str(), alices[1].as_str()]);
    let pending = app.http.get("/queries/orders?status=pending").await.body;
    assert_eq!(pending["total"], 4);

    for bad in [
        "status=lost",
        "status=Pending",
        "page=0",
        "page_size=101",
        "page_size=0",
        "user_id=nope",
        "sort=asc",
        "page=x",
        "page=101&page_size=100",
    ] {
        app.http
            .get(&format!("/queries/orders?{bad}"))
            .await
            .assert_problem(400, "invalid_query");
    }
}
