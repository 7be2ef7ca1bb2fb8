//! Conditional reads: `ETag`, `If-None-Match` and `304`, `Cache-Control`.

use serde_json::json;

use super::{app_with, fetch, header};
use crate::spawn_app;

/// A conditional `GET` of `path` with `If-None-Match: tag`: its status (and that a `304`
/// has no body and carries an `ETag` and a `Cache-Control`).
async fn revalidated(http: &kernel::testing::Http, path: &str, tag: &str) -> u16 {
    let (status, headers, body) = fetch(http, "GET", path, &[("if-none-match", tag)]).await;
    if status == 304 {
        assert!(body.is_empty(), "GET {path}: a 304 with a body");
        assert!(
            header(&headers, "etag").is_some_and(|t| t.starts_with("W/\"")),
            "GET {path}: {headers:?}"
        );
        assert!(header(&headers, "cache-control").is_some(), "GET {path}");
    }
    status
}

/// Products, users, orders and payments answer an `ETag` and `Cache-Control`, and `304`
/// without a body while the `ETag` is current; anything the answer shows changing makes
/// a new one: a reservation (which moves no product version), a rename, a status change
/// (an order's rename reaching its read model moves no order version). The order's tag
/// starts with its version, and a command takes it as `If-Match`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_answer_304_until_what_they_show_changes() {
    let app = spawn_app().await;
    let user = app.user("etag@example.com").await;
    let customer = app.as_user(&user);
    let product = app.product("Lamp", "3.00", 5).await;

    let path = format!("/products/{product}");
    let first = app.http.anonymous().get(&path).await;
    assert_eq!(first.header("cache-control"), Some("public, no-cache"));
    let tag = first.header("etag").expect("an ETag").to_owned();
    assert!(tag.starts_with("W/\"") && tag.len() == 36, "{tag}");
    let strong = tag.trim_start_matches("W/");
    for condition in [tag.as_str(), strong, "*", &format!("\"other\", {tag}")] {
        assert_eq!(
            revalidated(&app.http, &path, condition).await,
            304,
            "{condition}"
        );
    }
    assert_eq!(revalidated(&app.http, &path, "\"other\"").await, 200);
    app.http
        .request("GET", &path)
        .header("if-none-match", "unquoted")
        .send()
        .await
        .map(|r| assert_eq!(r.status(), 400))
        .unwrap();
    let list = app.http.get("/products").await;
    let list_tag = list.header("etag").unwrap().to_owned();
    assert_eq!(revalidated(&app.http, "/products", &list_tag).await, 304);

    let order = app.placed(&user, &[(&product, 2)]).await;
    assert_eq!(
        revalidated(&app.http, &path, &tag).await,
        200,
        "stock moved"
    );
    assert_eq!(revalidated(&app.http, "/products", &list_tag).await, 200);

    for (http, path) in [
        (&customer, "/users/me".to_owned()),
        (&app.http, format!("/users/{user}")),
    ] {
        let read = http.get(&path).await;
        assert_eq!(
            read.header("cache-control"),
            Some("private, no-cache"),
            "{path}"
        );
        let tag = read.header("etag").unwrap().to_owned();
        assert_eq!(revalidated(http, &path, &tag).await, 304, "{path}");
    }
    let me = customer.get("/users/me").await;
    let me_tag = me.header("etag").unwrap().to_owned();

    let view_path = format!("/queries/orders/{order}");
    let view = customer.get(&format!("{view_path}?min_version=1")).await;
    assert_eq!(view.header("cache-control"), Some("private, no-cache"));
    let view_tag = view.header("etag").unwrap().to_owned();
    assert!(
        view_tag.starts_with("W/\"1-"),
        "the version first: {view_tag}"
    );
    assert_eq!(revalidated(&customer, &view_path, &view_tag).await, 304);

    let renamed = customer
        .patch(&format!("/users/{user}"), json!({"name": "Renamed"}))
        .await;
    assert_eq!(renamed.status, 200);
    assert_eq!(revalidated(&customer, "/users/me", &me_tag).await, 200);
    crate::wait_for("the rename reaches the order's read model", async || {
        customer.get(&view_path).await.body["user_name"] == "Renamed"
    })
    .await;
    let renamed_view = customer.get(&view_path).await;
    assert_eq!(
        renamed_view.body["version"], 1,
        "a rename moves no order version"
    );
    assert_eq!(revalidated(&customer, &view_path, &view_tag).await, 200);

    let new_tag = renamed_view.header("etag").unwrap().to_owned();
    let confirmed = customer
        .request("POST", &format!("/commands/orders/{order}/confirm"))
        .header("if-match", new_tag.as_str())
        .json(&json!({"payment_token": "tok_visa"}))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 202, "the read's ETag is an If-Match");
    let stale = customer
        .request("POST", &format!("/commands/orders/{order}/cancel"))
        .header("if-match", new_tag.as_str())
        .json(&json!({"reason": "too late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412, "version 1 is gone");
    let view = customer.get(&format!("{view_path}?min_version=2")).await;
    assert!(view.header("etag").unwrap().starts_with("W/\"2-"));

    let payments = customer.get(&format!("/payments?order_id={order}")).await;
    let payment = payments.body["payments"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = customer.get(&format!("/payments/{payment}")).await;
    let tag = read.header("etag").unwrap().to_owned();
    assert_eq!(
        revalidated(&customer, &format!("/payments/{payment}"), &tag).await,
        304
    );
}

/// `CATALOG_MAX_AGE` is how long anyone may reuse a catalog read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_max_age_sets_how_long_catalog_reads_are_fresh() {
    let app = app_with(|c| c.catalog_max_age = std::time::Duration::from_secs(30)).await;
    let product = app.product("Lamp", "3.00", 5).await;
    for path in [
        format!("/products/{product}"),
        "/products?page=1".to_owned(),
    ] {
        let read = app.http.get(&path).await;
        assert_eq!(
            read.header("cache-control"),
            Some("public, max-age=30"),
            "{path}"
        );
    }
    let user = app.user("fresh@example.com").await;
    let me = app.as_user(&user).get("/users/me").await;
    assert_eq!(
        me.header("cache-control"),
        Some("private, no-cache"),
        "only the catalog"
    );
}
