use serde_json::json;

use crate::spawn_app;

#[tokio::test]
async fn register_then_get_returns_the_stored_user() {
    let app = spawn_app().await;
    let created = app
        .http
        .post(
            "/users",
            json!({"email": "  Ada@Example.COM ", "name": "  Ada Lovelace "}),
        )
        .await;
    assert_eq!(created.status, 201, "{:#}", created.body);
    let user = &created.body;
    let id = user["id"].as_str().expect("id");
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert_eq!(
        created.header("location"),
        Some(format!("/users/{id}").as_str())
    );
    assert_eq!(user["email"], "ada@example.com", "trimmed and lower-cased");
    assert_eq!(user["name"], "Ada Lovelace", "trimmed");
    assert_eq!(user["active"], true);
    assert_eq!(user["created_at"], user["updated_at"]);
    chrono::DateTime::parse_from_rfc3339(user["created_at"].as_str().unwrap()).expect("RFC 3339");

    let fetched = app.http.get(&format!("/users/{id}")).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(&fetched.body, user);
    assert_eq!(app.users_in_db().await, 1);
}

#[tokio::test]
async fn duplicate_email_is_rejected_case_insensitively() {
    let app = spawn_app().await;
    assert_eq!(
        app.http
            .post(
                "/users",
                json!({"email": "grace@example.com", "name": "Grace"})
            )
            .await
            .status,
        201
    );
    for email in [
        "grace@example.com",
        "GRACE@Example.com",
        " grace@EXAMPLE.COM ",
    ] {
        let again = app
            .http
            .post("/users", json!({"email": email, "name": "Other"}))
            .await;
        again.assert_problem(409, "email_taken");
    }
    assert_eq!(app.users_in_db().await, 1);
}

#[tokio::test]
async fn get_unknown_or_malformed_ids() {
    let app = spawn_app().await;
    app.http
        .get("/users/01900000-0000-7000-8000-000000000000")
        .await
        .assert_problem(404, "user_not_found");
    for bad in ["not-a-uuid", "123", "01900000-0000-7000-8000-00000000000g"] {
        app.http
            .get(&format!("/users/{bad}"))
            .await
            .assert_problem(400, "invalid_path");
        app.http
            .patch(&format!("/users/{bad}"), json!({"name": "x"}))
            .await
            .assert_problem(400, "invalid_path");
    }
}

#[tokio::test]
async fn patch_changes_each_field_and_keeps_the_rest() {
    let app = spawn_app().await;
    let user = app
        .http
        .post(
            "/users",
            json!({"email": "linus@example.com", "name": "Linus"}),
        )
        .await
        .body;
    let path = format!("/users/{}", user["id"].as_str().unwrap());

    let renamed = app.http.patch(&path, json!({"name": " Linus T "})).await;
    assert_eq!(renamed.status, 200, "{:#}", renamed.body);
    assert_eq!(renamed.body["name"], "Linus T");
    assert_eq!(renamed.body["email"], "linus@example.com");
    assert_ne!(renamed.body["updated_at"], user["updated_at"]);
    assert_eq!(renamed.body["created_at"], user["created_at"]);

    let moved = app
        .http
        .patch(&path, json!({"email": "LT@Example.org"}))
        .await;
    assert_eq!(moved.body["email"], "lt@example.org");

    let deactivated = app.http.patch(&path, json!({"active": false})).await;
    assert_eq!(deactivated.body["active"], false);
    assert_eq!(deactivated.body["name"], "Linus T");

    let unchanged = app.http.patch(&path, json!({})).await;
    assert_eq!(unchanged.status, 200);
    assert_eq!(
        unchanged.body, deactivated.body,
        "an empty patch changes nothing, not even updated_at"
    );

    let stored = app.http.get(&path).await.body;
    assert_eq!(stored, deactivated.body);

    // One event per change, in the same transaction: registered v1, three updates, and
    // nothing for the empty patch.
    let published = app
        .db
        .scalar("SELECT count(*) AS n FROM users.events")
        .await;
    assert_eq!(published, 4);
    let versions = app
        .db
        .scalar("SELECT count(*) AS n FROM users.events WHERE (event_type = 'user.registered' AND aggregate_version = 1) OR (event_type = 'user.updated' AND aggregate_version BETWEEN 2 AND 4)")
        .await;
    assert_eq!(versions, 4);
    let last = app.db.scalar("SELECT count(*) AS n FROM users.events WHERE aggregate_version = 4 AND payload = '{\"email\": \"lt@example.org\", \"name\": \"Linus T\", \"active\": false}'::jsonb").await;
    assert_eq!(last, 1, "the payload is the user after the change");
}

#[tokio::test]
async fn patch_email_to_a_taken_one_conflicts_and_changes_nothing() {
    let app = spawn_app().await;
    app.http
        .post(
            "/users",
            json!({"email": "first@example.com", "name": "First"}),
        )
        .await;
    let second = app
        .http
        .post(
            "/users",
            json!({"email": "second@example.com", "name": "Second"}),
        )
        .await
        .body;
    let path = format!("/users/{}", second["id"].as_str().unwrap());

    app.http
        .patch(
            &path,
            json!({"email": "FIRST@example.com", "name": "Renamed"}),
        )
        .await
        .assert_problem(409, "email_taken");
    let stored = app.http.get(&path).await.body;
    assert_eq!(stored, second, "a rejected patch leaves the user as it was");
}

#[tokio::test]
async fn patch_validates_like_register() {
    let app = spawn_app().await;
    let user = app
        .http
        .post("/users", json!({"email": "v@example.com", "name": "V"}))
        .await
        .body;
    let path = format!("/users/{}", user["id"].as_str().unwrap());
    let cases = [
        (json!({"email": "nope"}), 422, "validation_failed"),
        (json!({"name": "   "}), 422, "validation_failed"),
        (json!({"name": "x".repeat(201)}), 422, "validation_failed"),
        (json!({"active": "yes"}), 400, "invalid_body"),
        (json!({"nickname": "v"}), 400, "invalid_body"),
        (json!(["name"]), 400, "invalid_body"),
    ];
    for (body, status, code) in cases {
        app.http
            .patch(&path, body.clone())
            .await
            .assert_problem(status, code);
    }
    app.http
        .patch(
            "/users/01900000-0000-7000-8000-000000000000",
            json!({"name": "Ghost"}),
        )
        .await
        .assert_problem(404, "user_not_found");
    assert_eq!(app.http.get(&path).await.body, user);
    assert_eq!(
        app.db
            .scalar("SELECT count(*) AS n FROM users.events")
            .await,
        1,
        "rejected patches publish nothing"
    );
}
