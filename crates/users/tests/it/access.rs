//! The users routes x every kind of principal -> the contract's answer; denied cells
//! change nothing; and nothing leaks (passwords, hashes, tokens).

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use kernel::Role;
use kernel::testing::Http;
use serde_json::{Value, json};

use crate::{ADMIN_TOKEN, PASSWORD, TestApp, path, spawn_app};

/// A token for `user` signed with the app's own key (or `other_key`), with `claims`
/// changed from valid ones.
async fn forge(app: &TestApp, user: &Value, changes: Value, other_key: bool) -> String {
    let sub = user["id"].as_str().unwrap();
    ::users::testing::forge(&mut app.db.connect().await, sub, changes, other_key).await
}

/// What a route does, on the target user.
#[derive(Clone, Copy, Debug)]
enum Call {
    Me,
    Get,
    Rename,
    Deactivate,
    SetRoles,
}

impl Call {
    async fn send(self, http: &Http, target: &Value) -> kernel::testing::Answer {
        match self {
            Call::Me => http.get("/users/me").await,
            Call::Get => http.get(&path(target)).await,
            Call::Rename => http.patch(&path(target), json!({"name": "Renamed"})).await,
            Call::Deactivate => http.patch(&path(target), json!({"active": false})).await,
            Call::SetRoles => {
                http.put(
                    &format!("{}/roles", path(target)),
                    json!({"roles": ["catalog"]}),
                )
                .await
            }
        }
    }
}

#[tokio::test]
async fn users_routes_answer_each_principal_as_the_contract_says() {
    let app = spawn_app().await;
    let target = app.register("target@example.com").await;
    let other = app.register("other@example.com").await;
    let inactive = app.register("inactive@example.com").await;
    let (_, admin) = app.as_staff(Role::Admin).await;
    let inactive_client = app.as_customer(&inactive).await;
    assert_eq!(
        admin
            .patch(&path(&inactive), json!({"active": false}))
            .await
            .status,
        200
    );
    let token = |changes: Value, other_key: bool| {
        let (app, target) = (&app, &target);
        async move {
            app.http
                .with_bearer(&forge(app, target, changes, other_key).await)
        }
    };
    let now = jsonwebtoken::get_current_timestamp();
    let principals: Vec<(&str, Http)> = vec![
        ("anonymous", app.http.clone()),
        ("self", app.as_customer(&target).await),
        ("another customer", app.as_customer(&other).await),
        ("inactive user, valid token", inactive_client),
        ("catalog", app.as_staff(Role::Catalog).await.1),
        ("fulfilment", app.as_staff(Role::Fulfilment).await.1),
        ("support", app.as_staff(Role::Support).await.1),
        ("admin", admin.clone()),
        ("ADMIN_TOKEN", app.admin_token.clone()),
        (
            "expired",
            token(json!({"iat": now - 1200, "exp": now - 600}), false).await,
        ),
        ("another key", token(json!({}), true).await),
        (
            "another audience",
            token(json!({"aud": "elsewhere"}), false).await,
        ),
        ("no exp", token(json!({"exp": null}), false).await),
        (
            "malformed header",
            app.http.with_authorization("Bearer not.a.jwt"),
        ),
        (
            "not bearer",
            app.http.with_authorization("Basic dXNlcjpwYXNz"),
        ),
    ];
    let calls = [
        Call::Me,
        Call::Get,
        Call::Rename,
        Call::Deactivate,
        Call::SetRoles,
    ];
    let invalid = [401; 5];
    let expected: [[u16; 5]; 15] = [
        [401, 401, 401, 401, 401],
        [200, 200, 200, 403, 403],
        [200, 404, 404, 404, 403],
        [200, 404, 404, 404, 403],
        [200, 404, 404, 404, 403],
        [200, 404, 404, 404, 403],
        [200, 200, 200, 200, 403],
        [200, 200, 200, 200, 200],
        [403, 403, 403, 403, 200],
        invalid,
        invalid,
        invalid,
        invalid,
        invalid,
        invalid,
    ];
    let unknown = json!({"id": "01900000-0000-7000-8000-000000000000"});
    let unknown_answer = admin.get(&path(&unknown)).await;
    for ((who, http), row) in principals.iter().zip(expected) {
        for (call, status) in calls.into_iter().zip(row) {
            let before = admin.get(&path(&target)).await.body;
            let answer = call.send(http, &target).await;
            assert_eq!(answer.status, status, "{who} {call:?}: {:#}", answer.body);
            let after = admin.get(&path(&target)).await.body;
            if status >= 400 {
                assert_eq!(
                    after, before,
                    "{who} {call:?} was denied but changed the user"
                );
                let challenge = answer.header("www-authenticate");
                match (status, *who) {
                    (401, "anonymous") => assert_eq!(challenge, Some("Bearer")),
                    (401, _) => assert_eq!(challenge, Some(r#"Bearer error="invalid_token""#)),
                    _ => assert_eq!(challenge, None),
                }
                let code = match status {
                    401 => "unauthenticated",
                    403 => "forbidden",
                    _ => "user_not_found",
                };
                answer.assert_problem(status, code);
            }
            if status == 404 {
                // Exactly the answer for an id that does not exist (but for the id).
                let id = target["id"].as_str().unwrap();
                let body = answer
                    .body
                    .to_string()
                    .replace(id, unknown["id"].as_str().unwrap());
                assert_eq!(body, unknown_answer.body.to_string(), "{who} {call:?}");
                assert_eq!(
                    answer.headers.len(),
                    unknown_answer.headers.len(),
                    "{who} {call:?}"
                );
            }
            // Put the target back as it was.
            if status < 400 && !matches!(call, Call::Me | Call::Get) {
                let restore = json!({"name": before["name"], "active": true});
                assert_eq!(admin.patch(&path(&target), restore).await.status, 200);
                let roles = json!({"roles": []});
                let put = admin.put(&format!("{}/roles", path(&target)), roles).await;
                assert_eq!(put.status, 200);
            }
        }
    }
}

#[tokio::test]
async fn no_password_hash_or_token_leaks_into_answers_or_events() {
    let app = spawn_app().await;
    let user = app.register("quiet@example.com").await;
    let pair = app.tokens_of(&user).await;
    let me = app.as_customer(&user).await;
    let new_password = "another long password";
    let mut answers = vec![
        user.clone(),
        me.get("/users/me").await.body,
        me.patch(
            &path(&user),
            json!({"password": new_password, "current_password": PASSWORD}),
        )
        .await
        .body,
        app.login("quiet@example.com", PASSWORD).await.body,
        app.http
            .post(
                "/users",
                json!({"email": "quiet@example.com", "name": "Q", "password": PASSWORD}),
            )
            .await
            .body,
        app.http
            .post(
                "/users",
                json!({"email": "short@example.com", "name": "S", "password": "tiny"}),
            )
            .await
            .body,
        app.http
            .post(
                "/auth/token",
                json!({"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}),
            )
            .await
            .body,
        app.http
            .with_bearer(pair["access_token"].as_str().unwrap())
            .with_authorization(&format!(
                "Bearer {}x",
                pair["access_token"].as_str().unwrap()
            ))
            .get("/users/me")
            .await
            .body,
        app.http
            .with_bearer(ADMIN_TOKEN)
            .get("/users/me")
            .await
            .body,
    ];
    let events: Vec<Payload> =
        diesel::sql_query("SELECT payload::text AS payload FROM users.events")
            .load(&mut app.db.connect().await)
            .await
            .unwrap();
    answers.extend(events.into_iter().map(|e| Value::String(e.payload)));
    let secrets = [
        PASSWORD,
        new_password,
        "tiny",
        "$argon2",
        ADMIN_TOKEN,
        pair["access_token"].as_str().unwrap(),
        pair["refresh_token"].as_str().unwrap(),
    ];
    for answer in &answers {
        let text = answer.to_string();
        for secret in secrets {
            assert!(!text.contains(secret), "{secret:?} leaked into {text}");
        }
        assert!(
            !text.contains("quiet@example.com") || answer.get("code").is_none(),
            "an error body repeats the email: {text}"
        );
    }
}

#[derive(diesel::QueryableByName)]
struct Payload {
    #[diesel(sql_type = Text)]
    payload: String,
}
