//! Every malformed or invalid request answers a 4xx problem, never a 5xx, and writes
//! nothing.

use serde_json::json;

use crate::spawn_app;

/// (content type, raw body, status, code, the one invalid field)
type Case<'a> = (Option<&'a str>, String, u16, &'a str, Option<&'a str>);

#[tokio::test]
async fn register_rejects_bad_input_with_a_problem_and_writes_nothing() {
    let app = spawn_app().await;
    let json_ct = Some("application/json");
    let big_name = format!(
        "{{\"email\":\"big@example.com\",\"name\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let cases: Vec<Case> = vec![
        (
            json_ct,
            r#"{"email": "a@example.com", "name": "#.into(),
            400,
            "malformed_json",
            None,
        ),
        (json_ct, "not json".into(), 400, "malformed_json", None),
        (json_ct, "".into(), 400, "malformed_json", None),
        (
            json_ct,
            r#"{"email": "a@example.com", "name": "A", "admin": true}"#.into(),
            400,
            "invalid_body",
            None,
        ),
        (
            json_ct,
            r#"{"email": 42, "name": "A"}"#.into(),
            400,
            "invalid_body",
            None,
        ),
        (
            json_ct,
            r#"{"email": "a@example.com", "name": ["A"]}"#.into(),
            400,
            "invalid_body",
            None,
        ),
        (
            json_ct,
            r#"["a@example.com", "A"]"#.into(),
            400,
            "invalid_body",
            None,
        ),
        (json_ct, "null".into(), 400, "invalid_body", None),
        (
            Some("text/plain"),
            r#"{"email": "a@example.com", "name": "A"}"#.into(),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            Some("application/x-www-form-urlencoded"),
            "email=a@example.com&name=A".into(),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            None,
            r#"{"email": "a@example.com", "name": "A"}"#.into(),
            415,
            "unsupported_media_type",
            None,
        ),
        (json_ct, big_name, 413, "payload_too_large", None),
        (
            json_ct,
            r#"{"name": "A", "password": "correct horse battery"}"#.into(),
            422,
            "validation_failed",
            Some("email"),
        ),
        (
            json_ct,
            r#"{"email": "a@example.com", "password": "correct horse battery"}"#.into(),
            422,
            "validation_failed",
            Some("name"),
        ),
        (
            json_ct,
            r#"{"email": null, "name": "A", "password": "correct horse battery"}"#.into(),
            422,
            "validation_failed",
            Some("email"),
        ),
        (
            json_ct,
            r#"{"email": "a@example.com", "name": "   ", "password": "correct horse battery"}"#
                .into(),
            422,
            "validation_failed",
            Some("name"),
        ),
        (
            json_ct,
            format!(
                r#"{{"email": "a@example.com", "name": "{}", "password": "correct horse battery"}}"#,
                "n".repeat(201)
            ),
            422,
            "validation_failed",
            Some("name"),
        ),
        (
            json_ct,
            r#"{"email": "a@example.com", "name": "A"}"#.into(),
            422,
            "validation_failed",
            Some("password"),
        ),
        (
            json_ct,
            r#"{"email": "a@example.com", "name": "A", "password": "123456789"}"#.into(),
            422,
            "validation_failed",
            Some("password"),
        ),
        (
            json_ct,
            json!({"email": "a@example.com", "name": "A", "password": "p".repeat(257)}).to_string(),
            422,
            "validation_failed",
            Some("password"),
        ),
    ];
    let bad_emails = [
        "plain",
        "@example.com",
        "a@",
        "a@example",
        "a@@example.com",
        "a b@example.com",
        "a@exa mple.com",
        ".a@example.com",
        "a..b@example.com",
        "a@-example.com",
        "a@example.c_m",
        "",
    ];
    let mut all = cases;
    for email in bad_emails {
        all.push((
            json_ct,
            json!({"email": email, "name": "A", "password": "correct horse battery"}).to_string(),
            422,
            "validation_failed",
            Some("email"),
        ));
    }
    for (content_type, body, status, code, field) in all {
        let answer = app
            .http
            .raw("POST", "/users", content_type, body.clone().into_bytes())
            .await;
        let problem = answer.assert_problem(status, code);
        if let Some(field) = field {
            let fields: Vec<&str> = problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["field"].as_str().unwrap())
                .collect();
            assert!(
                !problem.to_string().contains("123456789"),
                "a password is never echoed: {problem}"
            );
            assert_eq!(
                fields,
                [field],
                "fields for {}",
                &body[..body.len().min(80)]
            );
        } else {
            assert!(
                problem.get("errors").is_none(),
                "errors appear only for validation failures"
            );
        }
    }
    assert_eq!(
        app.users_in_db().await,
        0,
        "no rejected request wrote anything"
    );
}

#[tokio::test]
async fn both_invalid_fields_are_named_at_once() {
    let app = spawn_app().await;
    let answer = app
        .http
        .post(
            "/users",
            json!({"email": "nope", "name": "", "password": "short"}),
        )
        .await;
    let problem = answer.assert_problem(422, "validation_failed");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "name", "password"]);
}

#[tokio::test]
async fn odd_input_never_yields_a_server_error() {
    let app = spawn_app().await;
    let bodies = [
        json!({"email": "\u{0}@example.com", "name": "\u{0}"}),
        json!({"email": "é@example.com", "name": "Zoë"}),
        json!({"email": "a@example.com", "name": "\u{202e}evil"}),
        json!({"email": format!("{}@example.com", "a".repeat(300)), "name": "A"}),
        json!({"email": "a@example.com", "name": {"first": "A"}}),
        json!({"email": 1e308, "name": -1}),
        json!({"email": "x@example.com", "name": "🙂".repeat(200)}),
        json!(9_007_199_254_740_993_u64),
        json!("just a string"),
    ];
    for body in bodies {
        let answer = app.http.post("/users", body.clone()).await;
        assert!(
            answer.status < 500,
            "{body} gave {} {:#}",
            answer.status,
            answer.body
        );
        if answer.status >= 400 {
            assert_eq!(
                answer.header("content-type"),
                Some("application/problem+json")
            );
        }
        let nested = "[".repeat(10_000);
        let deep = app
            .http
            .raw(
                "POST",
                "/users",
                Some("application/json"),
                nested.into_bytes(),
            )
            .await;
        assert_eq!(
            deep.status, 400,
            "deeply nested JSON is malformed, not a crash"
        );
    }
}
