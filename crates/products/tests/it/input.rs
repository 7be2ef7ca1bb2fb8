//! Malformed requests answer a 4xx problem, never a 5xx, and write nothing.

use serde_json::json;

use crate::spawn_app;

#[tokio::test]
async fn malformed_requests_are_rejected_and_write_nothing() {
    let app = spawn_app().await;
    let json_ct = Some("application/json");
    let huge = format!(
        r#"{{"name": "P", "price": "1", "description": "{}"}}"#,
        "d".repeat(65 * 1024)
    );
    let cases: Vec<(Option<&str>, String, u16, &str)> = vec![
        (
            json_ct,
            r#"{"name": "P", "price": "1""#.into(),
            400,
            "malformed_json",
        ),
        (
            json_ct,
            r#"{"name": "P", "price": "1", "colour": "red"}"#.into(),
            400,
            "invalid_body",
        ),
        (
            json_ct,
            r#"{"name": 7, "price": "1"}"#.into(),
            400,
            "invalid_body",
        ),
        (json_ct, r#"["P", "", "1", 1]"#.into(), 400, "invalid_body"),
        (
            Some("text/csv"),
            "name,price\nP,1".into(),
            415,
            "unsupported_media_type",
        ),
        (
            None,
            r#"{"name": "P", "price": "1"}"#.into(),
            415,
            "unsupported_media_type",
        ),
        (json_ct, huge, 413, "payload_too_large"),
        (
            json_ct,
            r#"{"price": "1"}"#.into(),
            422,
            "validation_failed",
        ),
        (json_ct, r#"{"name": "P"}"#.into(), 422, "validation_failed"),
    ];
    for (content_type, body, status, code) in cases {
        app.http
            .raw("POST", "/products", content_type, body.into_bytes())
            .await
            .assert_problem(status, code);
    }
    assert_eq!(
        app.db
            .scalar("SELECT count(*) AS n FROM products.products")
            .await,
        0
    );
}

#[tokio::test]
async fn odd_input_never_yields_a_server_error() {
    let app = spawn_app().await;
    let p = app.product("Odd", "1.00", 1).await;
    let id = p["id"].as_str().unwrap();
    let attempts = [
        (
            "POST",
            "/products".to_owned(),
            json!({"name": "\u{0}", "price": 1e300, "stock": 1}),
        ),
        (
            "POST",
            "/products".to_owned(),
            json!({"name": "P", "price": "1e400", "stock": 1}),
        ),
        (
            "POST",
            "/products".to_owned(),
            json!({"name": "P", "price": "99999999999999999999999999999999", "stock": 1}),
        ),
        (
            "POST",
            "/products".to_owned(),
            json!({"name": "P", "price": "NaN", "stock": 1}),
        ),
        (
            "POST",
            "/products".to_owned(),
            json!({"name": "P", "price": "0.000000000000000000000000001", "stock": 1}),
        ),
        (
            "PATCH",
            format!("/products/{id}"),
            json!({"price": "-0.00"}),
        ),
        (
            "PATCH",
            format!("/products/{id}"),
            json!({"price": 123456789012.34}),
        ),
        (
            "POST",
            format!("/products/{id}/restock"),
            json!({"quantity": i64::MAX}),
        ),
        (
            "POST",
            format!("/products/{id}/restock"),
            json!({"quantity": i64::MIN}),
        ),
        (
            "POST",
            format!("/products/{id}/restock"),
            json!({"quantity": u64::MAX}),
        ),
    ];
    for (method, path, body) in attempts {
        let answer = app
            .http
            .raw(
                method,
                &path,
                Some("application/json"),
                body.to_string().into_bytes(),
            )
            .await;
        assert!(
            (400..500).contains(&answer.status),
            "{method} {path} {body}: {} {:#}",
            answer.status,
            answer.body
        );
    }
    assert_eq!(app.stock_and_reserved(id).await, (1, 0));
    assert_eq!(
        app.http.get(&format!("/products/{id}")).await.body["price"],
        "1.00"
    );
}
