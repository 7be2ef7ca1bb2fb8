use serde_json::json;

use crate::{PASSWORD, path, spawn_app};
use kernel::Role;

#[tokio::test]
async fn register_then_get_returns_the_stored_user() {
    let app = spawn_app().await;
    let created = app
        .http
        .post(
            "/users",
            json!({"email": "  Ada@Example.COM ", "name": "  Ada Lovelace ", "password": PASSWORD}),
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
    assert_eq!(user["roles"], json!([]), "a new user is a customer");
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());
    assert_eq!(user["created_at"], user["updated_at"]);
    chrono::DateTime::parse_from_rfc3339(user["created_at"].as_str().unwrap()).expect("RFC 3339");

    let fetched = app
        .as_customer(user)
        .await
        .get(&format!("/users/{id}"))
        .await;
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
                json!({"email": "grace@example.com", "name": "Grace", "password": PASSWORD})
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
            .post(
                "/users",
                json!({"email": email, "name": "Other", "password": PASSWORD}),
            )
            .await;
        again.assert_problem(409, "email_taken");
    }
    assert_eq!(app.users_in_db().await, 1);
}

#[tokio::test]
async fn get_unknown_or_malformed_ids() {
    let app = spawn_app().await;
    let (_, support) = app.as_staff(Role::Support).await;
    support
        .get("/users/01900000-0000-7000-8000-000000000000")
        .await
        .assert_problem(404, "user_not_found");
    for bad in ["not-a-uuid", "123", "01900000-0000-7000-8000-00000000000g"] {
        support
            .get(&format!("/users/{bad}"))
            .await
            .assert_problem(400, "invalid_path");
        support
            .patch(&format!("/users/{bad}"), json!({"name": "x"}))
            .await
            .assert_problem(400, "invalid_path");
    }
}

#[tokio::test]
async fn patch_changes_each_field_and_keeps_the_rest() {
    let app = spawn_app().await;
    let user = app.register("linus@example.com").await;
    let (me, (_, support)) = (
        app.as_customer(&user).await,
        app.as_staff(Role::Support).await,
    );
    let path = path(&user);

    let renamed = me.patch(&path, json!({"name": " Linus T "})).await;
    assert_eq!(renamed.status, 200, "{:#}", renamed.body);
    assert_eq!(renamed.body["name"], "Linus T");
    assert_eq!(renamed.body["email"], "linus@example.com");
    assert_ne!(renamed.body["updated_at"], user["updated_at"]);
    assert_eq!(renamed.body["created_at"], user["created_at"]);

    let moved = me
        .patch(
            &path,
            json!({"email": "LT@Example.org", "current_password": PASSWORD}),
        )
        .await;
    assert_eq!(moved.body["email"], "lt@example.org");

    let deactivated = support.patch(&path, json!({"active": false})).await;
    assert_eq!(deactivated.body["active"], false);
    assert_eq!(deactivated.body["name"], "Linus T");

    let unchanged = support.patch(&path, json!({})).await;
    assert_eq!(unchanged.status, 200);
    assert_eq!(
        unchanged.body, deactivated.body,
        "an empty patch changes nothing, not even updated_at"
    );

    let stored = support.get(&path).await.body;
    assert_eq!(stored, deactivated.body);

    // One event per change, in the same transaction: registered v1, three updates, and
    // nothing for the empty patch.
    let published = app
        .db
        .scalar(&format!(
            "SELECT count(*) AS n FROM users.events WHERE aggregate_id = '{}'",
            user["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(published, 4);
    let versions = app
        .db
        .scalar("SELECT count(*) AS n FROM users.events WHERE (event_type = 'user.registered' AND aggregate_version = 1 AND payload->>'name' = 'linus') OR (event_type = 'user.updated' AND aggregate_version BETWEEN 2 AND 4)")
        .await;
    assert_eq!(versions, 4);
    let last = app.db.scalar("SELECT count(*) AS n FROM users.events WHERE aggregate_version = 4 AND payload = '{\"email\": \"lt@example.org\", \"name\": \"Linus T\", \"active\": false}'::jsonb").await;
    assert_eq!(last, 1, "the payload is the user after the change");
}

#[tokio::test]
async fn patch_email_to_a_taken_one_conflicts_and_changes_nothing() {
    let app = spawn_app().await;
    app.register("first@example.com").await;
    let second = app.register("second@example.com").await;
    let (_, support) = app.as_staff(Role::Support).await;
    let path = path(&second);

    support
        .patch(
            &path,
            json!({"email": "FIRST@example.com", "name": "Renamed"}),
        )
        .await
        .assert_problem(409, "email_taken");
    let stored = support.get(&path).await.body;
    assert_eq!(stored, second, "a rejected patch leaves the user as it was");
}

#[tokio::test]
async fn patch_validates_like_register() {
    let app = spawn_app().await;
    let user = app.register("v@example.com").await;
    let (_, support) = app.as_staff(Role::Support).await;
    let path = path(&user);
    let cases = [
        (json!({"email": "nope"}), 422, "validation_failed"),
        (json!({"name": "   "}), 422, "validation_failed"),
        (json!({"name": "x".repeat(201)}), 422, "validation_failed"),
        (json!({"active": "yes"}), 400, "invalid_body"),
        (json!({"nickname": "v"}), 400, "invalid_body"),
        (json!(["name"]), 400, "invalid_body"),
    ];
    for (body, status, code) in cases {
        support
            .patch(&path, body.clone())
            .await
            .assert_problem(status, code);
    }
    support
        .patch(
            "/users/01900000-0000-7000-8000-000000000000",
            json!({"name": "Ghost"}),
        )
        .await
        .assert_problem(404, "user_not_found");
    assert_eq!(support.get(&path).await.body, user);
    assert_eq!(
        app.db
            .scalar(&format!(
                "SELECT count(*) AS n FROM users.events WHERE aggregate_id = '{}'",
                user["id"].as_str().unwrap()
            ))
            .await,
        1,
        "rejected patches publish nothing"
    );
}
