//! The users and auth routes driven to each answer they document, validated against the
//! document (see `answers.rs`), ending with the database dropped (`503`).

use serde_json::{Value, json};

use super::answers::app;
use super::contract::{ADMIN_TOKEN, Client, NOBODY, Part, drop_database, id};
use crate::PASSWORD;

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn login(c: &mut Client<'_>, email: &str, password: &str) -> kernel::testing::Answer {
    let body = json!({"grant_type": "password", "email": email, "password": password});
    c.call("POST", "/auth/token", Some(body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_answer_as_documented() {
    let app = app().await;
    let mut c = Client::new(&app, Part::Users).anonymous();
    let register =
        |email: &str, name: &str| json!({"email": email, "name": name, "password": PASSWORD});
    let ada = c
        .call("POST", "/users", Some(register("Ada@Example.com", "Ada")))
        .await;
    assert_eq!(ada.status, 201, "{:#}", ada.body);
    let user = id(&ada, "id");
    let bob = c
        .call("POST", "/users", Some(register("bob@example.com", "Bob")))
        .await;
    assert_eq!(bob.status, 201);
    c.call("POST", "/users", Some(register("ada@example.com", "Ada")))
        .await
        .assert_problem(409, "email_taken");
    c.call("POST", "/users", Some(json!({"email": "nope", "name": ""})))
        .await
        .assert_problem(422, "validation_failed");
    c.bad_bodies("POST", "/users").await;

    let ada_token = app.login("ada@example.com").await;
    let ada_auth = bearer(&ada_token);
    let ada_h = [("authorization", ada_auth.as_str())];
    let admin_auth = bearer(ADMIN_TOKEN);
    let admin_h = [("authorization", admin_auth.as_str())];
    let bad_auth = [("authorization", "Bearer not-a-token")];
    let user_path = format!("/users/{user}");
    let roles_path = format!("{user_path}/roles");

    assert_eq!(
        c.call_with("GET", "/users/me", None, &ada_h).await.status,
        200
    );
    c.revalidate("/users/me", &ada_h).await;
    c.call("GET", "/users/me", None)
        .await
        .assert_problem(401, "unauthenticated");
    c.call_with("GET", "/users/me", None, &admin_h)
        .await
        .assert_problem(403, "forbidden");

    assert_eq!(
        c.call_with("GET", &user_path, None, &ada_h).await.status,
        200
    );
    c.revalidate(&user_path, &ada_h).await;
    c.call_with("GET", "/users/not-a-uuid", None, &ada_h)
        .await
        .assert_problem(400, "invalid_path");
    c.call_with("GET", &user_path, None, &bad_auth)
        .await
        .assert_problem(401, "unauthenticated");
    c.call_with("GET", &user_path, None, &admin_h)
        .await
        .assert_problem(403, "forbidden");
    c.call_with("GET", &format!("/users/{NOBODY}"), None, &ada_h)
        .await
        .assert_problem(404, "user_not_found");

    let renamed = c
        .call_with(
            "PATCH",
            &user_path,
            Some(json!({"name": "Ada King"})),
            &ada_h,
        )
        .await;
    assert_eq!(renamed.status, 200);
    let taken = json!({"email": "bob@example.com", "current_password": PASSWORD});
    c.call_with("PATCH", &user_path, Some(taken), &ada_h)
        .await
        .assert_problem(409, "email_taken");
    c.call_with("PATCH", &user_path, Some(json!({"name": " "})), &ada_h)
        .await
        .assert_problem(422, "validation_failed");
    c.call_with("PATCH", &user_path, Some(json!({"active": false})), &ada_h)
        .await
        .assert_problem(403, "forbidden");
    c.call("PATCH", &user_path, Some(json!({"name": "Anon"})))
        .await
        .assert_problem(401, "unauthenticated");
    c.call_with(
        "PATCH",
        &format!("/users/{NOBODY}"),
        Some(json!({})),
        &ada_h,
    )
    .await
    .assert_problem(404, "user_not_found");
    c.call_with("PATCH", "/users/not-a-uuid", Some(json!({})), &ada_h)
        .await
        .assert_problem(400, "invalid_path");
    c.bad_bodies("PATCH", &user_path).await;

    let granted = c
        .call_with(
            "PUT",
            &roles_path,
            Some(json!({"roles": ["support"]})),
            &admin_h,
        )
        .await;
    assert_eq!(
        (granted.status, &granted.body["roles"]),
        (200, &json!(["support"]))
    );
    c.call_with("PUT", &roles_path, Some(json!({"roles": []})), &ada_h)
        .await
        .assert_problem(403, "forbidden");
    c.call("PUT", &roles_path, Some(json!({"roles": []})))
        .await
        .assert_problem(401, "unauthenticated");
    c.call_with(
        "PUT",
        &roles_path,
        Some(json!({"roles": ["wizard"]})),
        &admin_h,
    )
    .await
    .assert_problem(422, "validation_failed");
    c.call_with(
        "PUT",
        &roles_path,
        Some(json!({"roles": "admin"})),
        &admin_h,
    )
    .await
    .assert_problem(400, "invalid_body");
    c.call_with(
        "PUT",
        &format!("/users/{NOBODY}/roles"),
        Some(json!({"roles": []})),
        &admin_h,
    )
    .await
    .assert_problem(404, "user_not_found");
    for (content_type, body, status) in [
        (
            "application/json",
            format!("{{\"roles\": [\"{}\"]}}", "x".repeat(70 * 1024)),
            413,
        ),
        ("text/plain", "roles".to_owned(), 415),
    ] {
        let answer = super::contract::send_raw(
            &app,
            "PUT",
            &roles_path,
            Some((content_type, body.into_bytes())),
            &admin_h,
        )
        .await;
        c.contract.check("PUT", &roles_path, &answer);
        assert_eq!(answer.status, status);
    }

    drop_database(c.app).await;
    type Request<'a> = (&'a str, String, Option<Value>, &'a [(&'a str, &'a str)]);
    let requests: Vec<Request> = vec![
        (
            "POST",
            "/users".to_owned(),
            Some(register("cy@example.com", "Cy")),
            &[],
        ),
        ("GET", "/users/me".to_owned(), None, &ada_h),
        ("GET", user_path.clone(), None, &ada_h),
        (
            "PATCH",
            user_path.clone(),
            Some(json!({"name": "Ada"})),
            &ada_h,
        ),
        (
            "PUT",
            roles_path.clone(),
            Some(json!({"roles": []})),
            &admin_h,
        ),
    ];
    for (method, path, body, headers) in requests {
        c.call_with(method, &path, body, headers)
            .await
            .assert_problem(503, "service_unavailable");
    }
    c.assert_all_seen();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_answers_as_documented() {
    let app = app().await;
    app.user("ada@example.com").await;
    let mut c = Client::new(&app, Part::Auth).anonymous();
    let pair = login(&mut c, "ada@example.com", PASSWORD).await;
    assert_eq!(pair.status, 200, "{:#}", pair.body);
    let refresh =
        json!({"grant_type": "refresh_token", "refresh_token": pair.body["refresh_token"]});
    assert_eq!(
        c.call("POST", "/auth/token", Some(refresh.clone()))
            .await
            .status,
        200
    );
    c.call("POST", "/auth/token", Some(refresh))
        .await
        .assert_problem(401, "invalid_grant");
    c.call("POST", "/auth/token", Some(json!({"grant_type": "magic"})))
        .await
        .assert_problem(422, "validation_failed");
    c.call("POST", "/auth/token", Some(json!({"grant_type": 1})))
        .await
        .assert_problem(400, "invalid_body");
    c.bad_bodies("POST", "/auth/token").await;
    for _ in 0..5 {
        login(&mut c, "ada@example.com", "wrong password")
            .await
            .assert_problem(401, "invalid_credentials");
    }
    login(&mut c, "ada@example.com", PASSWORD)
        .await
        .assert_problem(429, "too_many_attempts");

    let revoke = json!({"refresh_token": "never-issued"});
    assert_eq!(
        c.call("POST", "/auth/revoke", Some(revoke.clone()))
            .await
            .status,
        204
    );
    c.call("POST", "/auth/revoke", Some(json!({})))
        .await
        .assert_problem(422, "validation_failed");
    c.bad_bodies("POST", "/auth/revoke").await;
    let jwks = c.call("GET", "/.well-known/jwks.json", None).await;
    assert_eq!(jwks.status, 200);

    drop_database(c.app).await;
    let requests = [
        (
            "POST",
            "/auth/token",
            Some(json!({"grant_type": "password", "email": "b@example.com", "password": PASSWORD})),
        ),
        ("POST", "/auth/revoke", Some(revoke)),
        ("GET", "/.well-known/jwks.json", None),
    ];
    for (method, path, body) in requests {
        c.call(method, path, body)
            .await
            .assert_problem(503, "service_unavailable");
    }
    c.assert_all_seen();
}
