//! The document and the server agree on every shaped value: for each constrained field,
//! header and query parameter a table of values, each validated against the document's
//! own schema of it and sent to the real server, which must accept exactly what the
//! document allows. Money as text takes no sign, exponent, spaces or leading zero;
//! `If-Match` one version tag (the weak `ETag` of a read included); `Idempotency-Key`
//! visible ASCII only; `page` and `min_version` their declared bounds; names, reasons and
//! descriptions no control characters (a NUL once was a `500`); an integer may be written
//! as an integral number (`5.0`), as JSON Schema's `integer` allows.

use serde_json::{Value, json};

use super::contract::{Contract, document, operations, resolve};
use crate::{TestApp, spawn_app};

/// The schema of property `field` of component `schema`.
fn property(doc: &Value, schema: &str, field: &str) -> Value {
    let found = &doc["components"]["schemas"][schema]["properties"][field];
    assert!(found.is_object(), "{schema}.{field} is not documented");
    found.clone()
}

/// The schema of parameter `name` of operation `method path`.
fn parameter(doc: &Value, method: &str, path: &str, name: &str) -> Value {
    let parameters = doc["paths"][path][method]["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("{method} {path} has no parameters"));
    let found = parameters
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"));
    resolve(doc, &found["schema"]).clone()
}

/// Whether the document allows `value` for `schema`, which must be `expected`.
fn documented(contract: &Contract, schema: &Value, value: &Value, expected: bool) {
    let errors = contract.errors(schema, value);
    assert_eq!(
        errors.is_empty(),
        expected,
        "the document on {value}: {errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_is_taken_exactly_as_documented() {
    let app = spawn_app().await;
    let doc = document();
    let contract = Contract::new(doc.clone());
    let price = property(&doc, "NewProduct", "price");
    let cases = [
        (json!("9.90"), true),
        (json!("5"), true),
        (json!("0.01"), true),
        (json!("1000000000.00"), true),
        (json!(19.99), true),
        (json!(20.0), true),
        (json!(1e2), true),
        (json!("1e2"), false),
        (json!(" 9.90"), false),
        (json!("9.90 "), false),
        (json!("09.90"), false),
        (json!("+1"), false),
        (json!("-1"), false),
        (json!("1.500"), false),
        (json!("1."), false),
        (json!(".5"), false),
        (json!("0"), false),
        (json!("0.00"), false),
        (json!("1000000000.01"), false),
        (json!("abc"), false),
        (json!(0.001), false),
        (json!(-1), false),
        (json!(0), false),
        (json!(1_000_000_000.5), false),
    ];
    for (value, ok) in cases {
        documented(&contract, &price, &value, ok);
        let answer = app
            .http
            .post("/products", json!({"name": "Mug", "price": value}))
            .await;
        let expected = if ok { 201 } else { 422 };
        assert_eq!(answer.status, expected, "price {value}: {:#}", answer.body);
        if ok {
            let amount: f64 = answer.body["price"].as_str().unwrap().parse().unwrap();
            assert!(amount > 0.0, "{value}");
        } else {
            assert_eq!(answer.body["errors"][0]["field"], "price", "{value}");
        }
    }
}

/// A customer's order at version 1, with its product.
async fn pending_order(app: &TestApp, email: &str) -> String {
    let user = app.user(email).await;
    let product = app.product("Mug", "9.90", 100).await;
    app.placed(&user, &[(&product, 1)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_is_one_version_tag_exactly() {
    let app = spawn_app().await;
    let doc = document();
    let contract = Contract::new(doc.clone());
    let schema = parameter(&doc, "post", "/commands/orders/{id}/confirm", "If-Match");
    let order = pending_order(&app, "if-match@example.com").await;
    let hash = "0123456789abcdef0123456789abcdef";
    // A well-formed version that is not the order's is 412; anything else 400.
    let cases = [
        ("\"7\"".to_owned(), 412),
        ("W/\"7\"".to_owned(), 412),
        (format!("W/\"7-{hash}\""), 412),
        (format!("\"7-{hash}\""), 412),
        ("\"999999999999999999\"".to_owned(), 412),
        ("1".to_owned(), 400),
        ("01".to_owned(), 400),
        ("+1".to_owned(), 400),
        ("\"01\"".to_owned(), 400),
        ("\"+1\"".to_owned(), 400),
        ("\"0\"".to_owned(), 400),
        ("\"\"".to_owned(), 400),
        ("\"1\", \"2\"".to_owned(), 400),
        ("\"1000000000000000000\"".to_owned(), 400),
        (format!("W/\"1-{}\"", hash.to_uppercase()), 400),
        ("W/\"1-abc\"".to_owned(), 400),
        ("w/\"1\"".to_owned(), 400),
    ];
    let path = format!("/commands/orders/{order}/confirm");
    for (header, status) in &cases {
        documented(&contract, &schema, &json!(header), *status == 412);
        let answer = app
            .http
            .request("POST", &path)
            .header("if-match", header.as_str())
            .json(&json!({"payment_token": "tok_visa"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), *status, "If-Match: {header}");
    }
    // The weak ETag a read answers is taken as it is.
    let read = app
        .http
        .get(&format!("/queries/orders/{order}?min_version=1"))
        .await;
    let etag = read.header("etag").expect("an ETag").to_owned();
    assert!(etag.starts_with("W/\"1-"), "{etag}");
    documented(&contract, &schema, &json!(etag), true);
    let confirmed = app
        .http
        .request("POST", &path)
        .header("if-match", etag.as_str())
        .json(&json!({"payment_token": "tok_visa"}))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status().as_u16(), 202, "If-Match: {etag}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_is_visible_ascii_exactly() {
    let app = spawn_app().await;
    let doc = document();
    let contract = Contract::new(doc.clone());
    let schema = parameter(&doc, "post", "/commands/orders", "Idempotency-Key");
    let user = app.user("keys@example.com").await;
    let product = app.product("Mug", "9.90", 100).await;
    let cases = [
        ("7f0c-1".to_owned(), true),
        ("~!#$%&'*+-.^_`|".to_owned(), true),
        ("k".repeat(255), true),
        ("k".repeat(256), false),
        ("a b".to_owned(), false),
        ("a\tb".to_owned(), false),
        (String::new(), false),
    ];
    for (key, ok) in cases {
        documented(&contract, &schema, &json!(key), ok);
        let body = json!({"user_id": user, "items": [{"product_id": product, "quantity": 1}]});
        let answer = app
            .http
            .request("POST", "/commands/orders")
            .header("idempotency-key", key.as_str())
            .json(&body)
            .send()
            .await
            .unwrap();
        let expected = if ok { 202 } else { 400 };
        assert_eq!(
            answer.status().as_u16(),
            expected,
            "Idempotency-Key: {key:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_and_min_version_keep_their_declared_bounds() {
    let app = spawn_app().await;
    let doc = document();
    let contract = Contract::new(doc.clone());
    let order = pending_order(&app, "bounds@example.com").await;
    let pages = [
        ("page=1", json!(1), true),
        ("page=10000&page_size=1", json!(10_000), true),
        ("page=10001&page_size=1", json!(10_001), false),
        (
            "page=2147483648&page_size=1",
            json!(2_147_483_648_i64),
            false,
        ),
        ("page=0", json!(0), false),
        ("page=-1", json!(-1), false),
    ];
    for path in ["/queries/orders", "/products"] {
        let schema = parameter(&doc, "get", path, "page");
        assert_eq!(schema["type"], "integer", "{path}");
        for (query, page, ok) in &pages {
            documented(&contract, &schema, page, *ok);
            let answer = app.http.get(&format!("{path}?{query}")).await;
            if *ok {
                assert_eq!(answer.status, 200, "{path}?{query}: {:#}", answer.body);
            } else {
                answer.assert_problem(400, "invalid_query");
            }
        }
    }
    let schema = parameter(&doc, "get", "/queries/orders/{id}", "min_version");
    let version = property(&doc, "OrderView", "version");
    assert_eq!(
        (&schema["type"], &schema["format"]),
        (&version["type"], &version["format"]),
        "min_version is what version is"
    );
    let versions = [
        ("0", json!(0), true),
        ("1", json!(1), true),
        ("-1", json!(-1), false),
        (
            "9223372036854775808",
            json!(9_223_372_036_854_775_808_u64),
            false,
        ),
        ("1.5", json!(1.5), false),
    ];
    for (text, value, ok) in versions {
        documented(&contract, &schema, &value, ok);
        let answer = app
            .http
            .get(&format!("/queries/orders/{order}?min_version={text}"))
            .await;
        if ok {
            assert_eq!(answer.status, 200, "min_version={text}: {:#}", answer.body);
        } else {
            answer.assert_problem(400, "invalid_query");
        }
    }
}

/// JSON Schema's `integer` is a value, so `5.0` is one: the server takes it as `5`, and
/// `5.5` is a wrong type (`400`) as the document says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integer_may_be_written_as_an_integral_number() {
    let app = spawn_app().await;
    let doc = document();
    let contract = Contract::new(doc.clone());
    let user = app.user("integral@example.com").await;
    for (stock, status) in [(json!(20.0), 201), (json!(2e1), 201), (json!(20.5), 400)] {
        documented(
            &contract,
            &property(&doc, "NewProduct", "stock"),
            &stock,
            status == 201,
        );
        let answer = app
            .http
            .post(
                "/products",
                json!({"name": "Mug", "price": "1.00", "stock": stock}),
            )
            .await;
        assert_eq!(answer.status, status, "stock {stock}: {:#}", answer.body);
        if status == 201 {
            assert_eq!(answer.body["stock"], 20);
        }
    }
    let product = app.product("Cup", "1.00", 10).await;
    let restock = format!("/products/{product}/restock");
    let answer = app.http.post(&restock, json!({"quantity": 5.0})).await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    assert_eq!(answer.body["stock"], 15);
    let answer = app.http.post(&restock, json!({"quantity": 5.5})).await;
    answer.assert_problem(400, "invalid_body");
    let line = json!({"user_id": user, "items": [{"product_id": product, "quantity": 2.0}]});
    let answer = app.http.post("/commands/orders", line).await;
    assert_eq!(answer.status, 202, "{:#}", answer.body);
    assert_eq!(app.stock(&product).await, (13, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_fields_are_taken_exactly_as_documented() {
    let app = spawn_app().await;
    let doc = document();
    let contract = Contract::new(doc.clone());
    let name = property(&doc, "NewProduct", "name");
    let names = [
        (json!("  Mug \t"), true),
        (json!("\u{3000}Mug\u{a0}"), true),
        (json!("é".repeat(200)), true),
        (json!(format!(" {} ", "é".repeat(200))), true),
        (json!("é".repeat(201)), false),
        (json!(""), false),
        (json!(" \t "), false),
        (json!("a\u{0}b"), false),
        (json!("a\u{89}"), false),
        (json!("a\nb"), false),
    ];
    for (value, ok) in names {
        documented(&contract, &name, &value, ok);
        let answer = app
            .http
            .post("/products", json!({"name": value, "price": "1.00"}))
            .await;
        assert_eq!(answer.status, if ok { 201 } else { 422 }, "name {value}");
    }
    let description = property(&doc, "NewProduct", "description");
    for (value, ok) in [
        (json!("two\nlines\r\n\tindented"), true),
        (json!("x".repeat(5000)), true),
        (json!("x".repeat(5001)), false),
        (json!("nul\u{0}"), false),
    ] {
        documented(&contract, &description, &value, ok);
        let body = json!({"name": "Mug", "price": "1.00", "description": value});
        let answer = app.http.post("/products", body).await;
        assert_eq!(
            answer.status,
            if ok { 201 } else { 422 },
            "description {value}"
        );
    }
    let email = property(&doc, "NewUser", "email");
    for (i, (value, ok)) in [
        (" Ada@Example.COM ".to_owned(), true),
        (format!("{}@example.com", "a".repeat(64)), true),
        (format!("{}@example.com", "a".repeat(65)), false),
        ("\u{212a}elvin@example.com".to_owned(), false),
        ("a..b@example.com".to_owned(), false),
        ("ada@example.123".to_owned(), false),
    ]
    .into_iter()
    .enumerate()
    {
        let value = value.replace("Ada", &format!("Ada{i}"));
        documented(&contract, &email, &json!(value), ok);
        let body = json!({"email": value, "name": "Ada", "password": "long enough password"});
        let answer = app.http.anonymous().post("/users", body).await;
        assert_eq!(answer.status, if ok { 201 } else { 422 }, "email {value}");
    }
    let reason = property(&doc, "CancelOrder", "reason");
    let order = pending_order(&app, "reasons@example.com").await;
    for (value, ok) in [
        (json!("nul\u{0}"), false),
        (json!(" "), false),
        (json!("x".repeat(501)), false),
        (json!(" changed my mind "), true),
    ] {
        documented(&contract, &reason, &value, ok);
        let answer = app
            .command(&order, "cancel", json!({"reason": value}))
            .await;
        assert_eq!(answer.status, if ok { 202 } else { 422 }, "reason {value}");
    }
    let token = property(&doc, "ConfirmOrder", "payment_token");
    for value in [json!(""), json!("tok visa"), json!("x".repeat(256))] {
        documented(&contract, &token, &value, false);
        let order = pending_order(
            &app,
            &format!("token-{}@example.com", value.to_string().len()),
        )
        .await;
        let answer = app
            .command(&order, "confirm", json!({"payment_token": value}))
            .await;
        answer.assert_problem(422, "validation_failed");
    }
}

/// Every operation declares the answers any route gives (`405` with `Allow`, the
/// unmatched-route `404`), and every problem response an example of its own status.
#[test]
fn every_operation_declares_what_any_route_answers() {
    let doc = document();
    for (method, path) in operations(&doc) {
        let responses = &doc["paths"][&path][method.to_lowercase()]["responses"];
        assert_eq!(
            responses["405"]["$ref"], "#/components/responses/MethodNotAllowed",
            "{method} {path}"
        );
        let not_found = resolve(&doc, &responses["404"]);
        assert!(
            not_found["description"]
                .as_str()
                .is_some_and(|d| d.contains("route_not_found")),
            "{method} {path}: {not_found}"
        );
        for (status, response) in responses.as_object().unwrap() {
            let response = resolve(&doc, response);
            let Some(example) = response["content"]["application/problem+json"].get("example")
            else {
                continue;
            };
            assert_eq!(
                example["status"].to_string(),
                *status,
                "{method} {path} {status}: {example}"
            );
            let code = example["code"].as_str().unwrap();
            assert!(
                response["description"].as_str().unwrap().contains(code),
                "{method} {path} {status}: {code}"
            );
        }
    }
    assert_eq!(doc["servers"][0]["url"], ".", "relative, for a path prefix");
}
