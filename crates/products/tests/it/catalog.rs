use serde_json::json;

use crate::spawn_app;

#[tokio::test]
async fn create_then_get() {
    let app = spawn_app().await;
    let created = app
        .http
        .post(
            "/products",
            json!({"name": " Mug ", "description": "A mug.", "price": "9.90", "stock": 20}),
        )
        .await;
    assert_eq!(created.status, 201, "{:#}", created.body);
    let p = &created.body;
    let id = p["id"].as_str().unwrap();
    assert_eq!(
        created.header("location"),
        Some(format!("/products/{id}").as_str())
    );
    assert_eq!(p["name"], "Mug");
    assert_eq!(p["description"], "A mug.");
    assert_eq!(p["price"], "9.90", "money is a string with two decimals");
    assert_eq!(
        (p["stock"].as_i64(), p["reserved"].as_i64()),
        (Some(20), Some(0))
    );
    assert_eq!(app.http.get(&format!("/products/{id}")).await.body, *p);

    let minimal = app
        .http
        .post("/products", json!({"name": "Pen", "price": 2}))
        .await;
    assert_eq!(minimal.status, 201);
    assert_eq!(minimal.body["price"], "2.00");
    assert_eq!(
        minimal.body["description"], "",
        "description defaults to empty"
    );
    assert_eq!(minimal.body["stock"], 0, "stock defaults to 0");
}

#[tokio::test]
async fn prices_accept_strings_and_numbers_with_two_decimals_at_most() {
    let app = spawn_app().await;
    let accepted = [
        (json!("19.99"), "19.99"),
        (json!(19.99), "19.99"),
        (json!(5), "5.00"),
        (json!("0.5"), "0.50"),
        (json!(0.01), "0.01"),
        (json!("1.50"), "1.50"),
        (json!(1e3), "1000.00"),
    ];
    for (price, rendered) in accepted {
        let answer = app
            .http
            .post(
                "/products",
                json!({"name": "P", "price": price, "stock": 1}),
            )
            .await;
        assert_eq!(answer.status, 201, "{price}: {:#}", answer.body);
        assert_eq!(answer.body["price"], rendered);
    }
    let rejected = [
        (json!("0"), 422),
        (json!(0), 422),
        (json!("-1"), 422),
        (json!(-0.5), 422),
        (json!("1.999"), 422),
        (json!(19.999), 422),
        (json!("abc"), 422),
        (json!(""), 422),
        (json!("1,00"), 422),
        (json!(null), 422),
        (json!(1000000000.01), 422),
        (json!(true), 400),
        (json!({"amount": 1}), 400),
        (json!([1]), 400),
    ];
    for (price, status) in rejected {
        let answer = app
            .http
            .post(
                "/products",
                json!({"name": "P", "price": price, "stock": 1}),
            )
            .await;
        let code = if status == 422 {
            "validation_failed"
        } else {
            "invalid_body"
        };
        let problem = answer.assert_problem(status, code);
        if status == 422 {
            assert_eq!(problem["errors"][0]["field"], "price", "{price}");
        }
    }
    assert_eq!(
        app.db
            .scalar("SELECT count(*) AS n FROM products.products")
            .await,
        7,
        "only accepted ones stored"
    );
}

#[tokio::test]
async fn stock_must_be_an_integer_within_bounds() {
    let app = spawn_app().await;
    // An integral number is the integer it is (JSON Schema's `integer`).
    for stock in [
        json!(0),
        json!(1),
        json!(1_000_000_000),
        json!(20.0),
        json!(1e9),
    ] {
        assert_eq!(
            app.http
                .post(
                    "/products",
                    json!({"name": "S", "price": "1", "stock": stock})
                )
                .await
                .status,
            201
        );
    }
    for (stock, status) in [
        (json!(-1), 422),
        (json!(1_000_000_001), 422),
        (json!(i64::MAX), 422),
        (json!("5"), 400),
        (json!(1.5), 400),
        (json!(1e30), 422),
    ] {
        let answer = app
            .http
            .post(
                "/products",
                json!({"name": "S", "price": "1", "stock": stock}),
            )
            .await;
        assert_eq!(answer.status, status, "{stock}: {:#}", answer.body);
        if status == 422 {
            assert_eq!(answer.body["errors"][0]["field"], "stock");
        }
    }
}

#[tokio::test]
async fn list_pages_newest_first() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for name in ["a", "b", "c", "d", "e"] {
        ids.push(
            app.product(name, "1.00", 1).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let first = app.http.get("/products?page=1&page_size=2").await;
    assert_eq!(first.status, 200);
    let names: Vec<&str> = first.body["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["e", "d"]);
    assert_eq!(
        (
            first.body["total"].as_u64(),
            first.body["total_pages"].as_u64()
        ),
        (Some(5), Some(3))
    );
    assert_eq!(
        (
            first.body["page"].as_u64(),
            first.body["page_size"].as_u64()
        ),
        (Some(1), Some(2))
    );
    let last = app.http.get("/products?page=3&page_size=2").await.body;
    assert_eq!(last["products"][0]["id"], ids[0].as_str());
    let beyond = app.http.get("/products?page=9&page_size=2").await.body;
    assert_eq!(beyond["products"], json!([]));
    let default = app.http.get("/products").await.body;
    assert_eq!(
        (default["page"].as_u64(), default["page_size"].as_u64()),
        (Some(1), Some(20))
    );
    assert_eq!(default["products"].as_array().unwrap().len(), 5);

    for bad in [
        "page=0",
        "page_size=0",
        "page_size=101",
        "page=abc",
        "page=-1",
        "page_size=1.5",
        "sort=name",
        "page=99999999999",
        "page=101&page_size=100",
        "page=501",
    ] {
        app.http
            .get(&format!("/products?{bad}"))
            .await
            .assert_problem(400, "invalid_query");
    }
    let deepest = app.http.get("/products?page=100&page_size=100").await;
    assert_eq!(deepest.status, 200, "page x page_size = 10,000 is allowed");
    let too_deep = app.http.get("/products?page=10001&page_size=1").await;
    let detail = too_deep.assert_problem(400, "invalid_query")["detail"]
        .as_str()
        .unwrap();
    assert!(detail.contains("10000"), "says why: {detail}");
}

/// The catalog's total is a count the database keeps on every insert, not a count per
/// list: exact after concurrent creations and after rows written outside the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_is_kept_exact_without_counting_the_catalog() {
    let app = spawn_app().await;
    let created = futures_util::future::join_all((0..20).map(|i| {
        app.http
            .post("/products", json!({"name": format!("p{i}"), "price": 1}))
    }))
    .await;
    assert!(created.iter().all(|c| c.status == 201));
    let total = |body: &serde_json::Value| body["total"].as_i64();
    assert_eq!(
        total(&app.http.get("/products?page_size=1").await.body),
        Some(20)
    );

    let bulk = "INSERT INTO products.products (id, name, description, price, stock, created_at, updated_at) \
         SELECT gen_random_uuid(), 'bulk', '', 1.00, 0, now(), now() FROM generate_series(1, 30000)";
    let mut conn = app.db.connect().await;
    diesel_async::RunQueryDsl::execute(diesel::sql_query(bulk), &mut conn)
        .await
        .unwrap();
    let listed = app.http.get("/products?page_size=1").await.body;
    assert_eq!(total(&listed), Some(30_020));
    assert_eq!(listed["total_pages"], 30_020);
    assert_eq!(
        app.db
            .scalar("SELECT count(*) AS n FROM products.products")
            .await,
        30_020
    );
    assert_eq!(
        app.db.scalar("SELECT n FROM products.product_count").await,
        30_020,
        "one row holds the count"
    );
}

#[tokio::test]
async fn patch_changes_name_description_and_price_only() {
    let app = spawn_app().await;
    let p = app.product("Lamp", "30.00", 4).await;
    let path = format!("/products/{}", p["id"].as_str().unwrap());
    let changed = app
        .http
        .patch(
            &path,
            json!({"name": "Desk lamp", "price": 25.5, "description": "Bright"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{:#}", changed.body);
    assert_eq!(
        (
            changed.body["name"].as_str(),
            changed.body["price"].as_str()
        ),
        (Some("Desk lamp"), Some("25.50"))
    );
    assert_eq!(changed.body["description"], "Bright");
    assert_eq!(changed.body["stock"], 4);
    assert_eq!(app.http.get(&path).await.body, changed.body);

    for (body, status) in [
        (json!({"stock": 100}), 400),
        (json!({"reserved": 0}), 400),
        (json!({"price": "0"}), 422),
        (json!({"price": "1.001"}), 422),
        (json!({"name": ""}), 422),
        (json!({"description": "x".repeat(5001)}), 422),
    ] {
        assert_eq!(
            app.http.patch(&path, body.clone()).await.status,
            status,
            "{body}"
        );
    }
    assert_eq!(
        app.http.get(&path).await.body,
        changed.body,
        "rejected patches change nothing"
    );
    let events = app.db.scalar("SELECT count(*) AS n FROM products.events WHERE aggregate_version = 2 AND event_type = 'product.updated'").await;
    assert_eq!(events, 1, "one product.updated, none for rejected patches");
    app.http
        .patch(
            "/products/01900000-0000-7000-8000-000000000000",
            json!({"name": "x"}),
        )
        .await
        .assert_problem(404, "product_not_found");
    app.http
        .get("/products/nope")
        .await
        .assert_problem(400, "invalid_path");
}

#[tokio::test]
async fn restock_adds_to_stock_within_the_limit() {
    let app = spawn_app().await;
    let p = app.product("Cup", "3.00", 5).await;
    let path = format!("/products/{}/restock", p["id"].as_str().unwrap());
    let restocked = app.http.post(&path, json!({"quantity": 7})).await;
    assert_eq!(restocked.status, 200, "{:#}", restocked.body);
    assert_eq!(restocked.body["stock"], 12);

    for (body, status, code) in [
        (json!({"quantity": 0}), 422, "validation_failed"),
        (json!({"quantity": -3}), 422, "validation_failed"),
        (json!({}), 422, "validation_failed"),
        (json!({"quantity": 1_000_000_001}), 422, "validation_failed"),
        (json!({"quantity": "3"}), 400, "invalid_body"),
        (json!({"quantity": 2.5}), 400, "invalid_body"),
        (json!({"quantity": 1_000_000_000}), 409, "stock_limit"),
    ] {
        app.http
            .post(&path, body.clone())
            .await
            .assert_problem(status, code);
    }
    assert_eq!(
        app.stock_and_reserved(p["id"].as_str().unwrap()).await,
        (12, 0)
    );
    let restocked = app.db.scalar("SELECT count(*) AS n FROM products.events WHERE event_type = 'product.restocked' AND aggregate_version = 2 AND payload = '{\"quantity\": 7, \"stock\": 12}'::jsonb").await;
    assert_eq!(restocked, 1);
    assert_eq!(
        app.db
            .scalar("SELECT count(*) AS n FROM products.events")
            .await,
        2,
        "created + restocked"
    );
    app.http
        .post(
            "/products/01900000-0000-7000-8000-000000000000/restock",
            json!({"quantity": 1}),
        )
        .await
        .assert_problem(404, "product_not_found");
}
