//! The token lifecycle: login, refresh rotation, reuse detection, logout, revocation on
//! account changes, key rotation, a second instance, and the brute-force lock.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kernel::Role;
use serde_json::{Value, json};

use crate::{PASSWORD, Setup, path, spawn_app, spawn_on, spawn_with};

/// The JSON of a JWT's header and claims (not verified: the server does that).
fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut decode = || {
        let part = parts.next().expect("a JWT has three parts");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    };
    (decode(), decode())
}

fn refresh_body(token: &Value) -> Value {
    json!({"grant_type": "refresh_token", "refresh_token": token})
}

#[tokio::test]
async fn login_issues_an_eddsa_token_and_refreshes_rotate_once_each() {
    let app = spawn_app().await;
    let user = app.register("ada@example.com").await;
    let pair = app.tokens_of(&user).await;
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    let refresh = pair["refresh_token"].as_str().unwrap();
    assert!(
        URL_SAFE_NO_PAD.decode(refresh).unwrap().len() >= 32,
        "at least 256 random bits"
    );
    let (header, claims) = jwt_parts(pair["access_token"].as_str().unwrap());
    assert_eq!(header["alg"], "EdDSA");
    let jwks = app.http.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status, 200);
    let keys = jwks.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (&keys[0]["kty"], &keys[0]["crv"], &keys[0]["kid"]),
        (&json!("OKP"), &json!("Ed25519"), &header["kid"])
    );
    assert_eq!(claims["sub"], user["id"]);
    assert_eq!(claims["aud"], ::users::AUDIENCE);
    assert_eq!(claims["iss"], ::users::ISSUER);
    assert_eq!(claims["roles"], json!([]));
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        900
    );
    assert!(claims["jti"].is_string());

    let me = app
        .http
        .with_bearer(pair["access_token"].as_str().unwrap())
        .get("/users/me")
        .await;
    assert_eq!((me.status, &me.body), (200, &user));

    // The refresh token is stored only as a hash.
    let stored = app
        .db
        .scalar(&format!(
            "SELECT count(*) AS n FROM users.refresh_tokens WHERE token_hash = convert_to('{refresh}', 'UTF8')"
        ))
        .await;
    assert_eq!(stored, 0);

    let second = app
        .http
        .post("/auth/token", refresh_body(&pair["refresh_token"]))
        .await;
    assert_eq!(second.status, 200, "{:#}", second.body);
    assert_ne!(second.body["refresh_token"], pair["refresh_token"]);
    assert_ne!(second.body["access_token"], pair["access_token"]);
    let third = app
        .http
        .post("/auth/token", refresh_body(&second.body["refresh_token"]))
        .await;
    assert_eq!(third.status, 200, "{:#}", third.body);

    // The first token again: theft. The whole family goes, the newest pair included.
    app.http
        .post("/auth/token", refresh_body(&pair["refresh_token"]))
        .await
        .assert_problem(401, "invalid_grant");
    app.http
        .post("/auth/token", refresh_body(&third.body["refresh_token"]))
        .await
        .assert_problem(401, "invalid_grant");
    // Another login is another family, unaffected.
    let other = app.tokens_of(&user).await;
    let again = app
        .http
        .post("/auth/token", refresh_body(&other["refresh_token"]))
        .await;
    assert_eq!(again.status, 200);
}

#[tokio::test]
async fn revoke_logs_out_and_unknown_tokens_are_fine() {
    let app = spawn_app().await;
    let user = app.register("grace@example.com").await;
    let pair = app.tokens_of(&user).await;
    let revoke = |token: Value| {
        let http = app.http.clone();
        async move {
            http.post("/auth/revoke", json!({"refresh_token": token}))
                .await
        }
    };
    assert_eq!(revoke(pair["refresh_token"].clone()).await.status, 204);
    app.http
        .post("/auth/token", refresh_body(&pair["refresh_token"]))
        .await
        .assert_problem(401, "invalid_grant");
    assert_eq!(revoke(pair["refresh_token"].clone()).await.status, 204);
    assert_eq!(revoke(json!("never-issued")).await.status, 204);
    app.http
        .post("/auth/revoke", json!({}))
        .await
        .assert_problem(422, "validation_failed");
}

#[tokio::test]
async fn deactivation_role_change_and_password_change_revoke_refresh_tokens() {
    let app = spawn_app().await;
    let (_, support) = app.as_staff(Role::Support).await;
    let new_password = "a brand new password";
    let cases = ["deactivate", "roles", "password"];
    for case in cases {
        let user = app.register(&format!("{case}@example.com")).await;
        let pair = app.tokens_of(&user).await;
        let me = app.http.with_bearer(pair["access_token"].as_str().unwrap());
        let changed = match case {
            "deactivate" => support.patch(&path(&user), json!({"active": false})).await,
            "roles" => {
                app.admin_token
                    .put(
                        &format!("{}/roles", path(&user)),
                        json!({"roles": ["catalog"]}),
                    )
                    .await
            }
            _ => {
                me.patch(
                    &path(&user),
                    json!({"password": new_password, "current_password": PASSWORD}),
                )
                .await
            }
        };
        assert_eq!(changed.status, 200, "{case}: {:#}", changed.body);
        assert!(changed.body.get("password").is_none());
        app.http
            .post("/auth/token", refresh_body(&pair["refresh_token"]))
            .await
            .assert_problem(401, "invalid_grant");
        let email = user["email"].as_str().unwrap();
        let relogin = app.login(email, PASSWORD).await;
        match case {
            "deactivate" => relogin.assert_problem(401, "invalid_credentials").clone(),
            "roles" => {
                let (_, claims) = jwt_parts(relogin.body["access_token"].as_str().unwrap());
                assert_eq!(
                    claims["roles"],
                    json!(["catalog"]),
                    "the next token has the roles"
                );
                relogin.body.clone()
            }
            _ => {
                relogin.assert_problem(401, "invalid_credentials");
                let fresh = app.login(email, new_password).await;
                assert_eq!(fresh.status, 200, "the new password works");
                fresh.body
            }
        };
    }
    // A wrong or missing current_password changes nothing.
    let user = app.register("careful@example.com").await;
    let me = app.as_customer(&user).await;
    me.patch(&path(&user), json!({"password": new_password}))
        .await
        .assert_problem(422, "validation_failed");
    me.patch(
        &path(&user),
        json!({"email": "x@example.com", "current_password": "not the password"}),
    )
    .await
    .assert_problem(403, "forbidden");
    assert_eq!(me.get("/users/me").await.body, user);
}

#[tokio::test]
async fn rotated_keys_keep_old_tokens_valid_and_a_second_instance_agrees() {
    let app = spawn_app().await;
    let user = app.register("rot@example.com").await;
    let old = app.tokens_of(&user).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (old_header, _) = jwt_parts(&old);

    let pool = kernel::db::pool(&app.db.url, &::users::SCHEMA, Default::default()).unwrap();
    let kid = ::users::rotate_key(&pool).await.unwrap();
    assert_ne!(json!(kid), old_header["kid"]);

    let new = app.tokens_of(&user).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        jwt_parts(&new).0["kid"],
        json!(kid),
        "new tokens carry the new kid"
    );
    let jwks = app.http.get("/.well-known/jwks.json").await.body;
    let kids: Vec<&Value> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert_eq!(
        kids,
        [&json!(kid), &old_header["kid"]],
        "newest first, the old one stays"
    );

    // A second instance on the same database, started after the rotation, and the first
    // one, both accept both tokens.
    let second = spawn_on(app.db.clone(), Setup::default()).await;
    for (instance, http) in [("first", &app.http), ("second", &second.http)] {
        for token in [&old, &new] {
            let me = http.with_bearer(token).get("/users/me").await;
            assert_eq!(me.status, 200, "{instance}: {:#}", me.body);
        }
    }
    // A token the second instance issues is accepted by the first.
    let from_second = second.tokens_of(&user).await;
    let me = app
        .http
        .with_bearer(from_second["access_token"].as_str().unwrap())
        .get("/users/me")
        .await;
    assert_eq!(me.status, 200);
}

#[tokio::test]
async fn unknown_kid_from_a_key_added_later_is_found_by_reloading() {
    let app = spawn_app().await;
    let second = spawn_on(app.db.clone(), Setup::default()).await;
    let user = app.register("late@example.com").await;
    // Rotate, then let only the second instance learn of it by issuing a token.
    let pool = kernel::db::pool(&app.db.url, &::users::SCHEMA, Default::default()).unwrap();
    let kid = ::users::rotate_key(&pool).await.unwrap();
    let token = second.tokens_of(&user).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(jwt_parts(&token).0["kid"], json!(kid));
    // Reloads are rate limited (once a second): poll until the first instance has one.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let me = app.http.with_bearer(&token).get("/users/me").await;
        if me.status == 200 {
            break;
        }
        me.assert_problem(401, "unauthenticated");
        assert!(std::time::Instant::now() < deadline, "{:#}", me.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn five_failures_lock_an_email_until_the_window_passes() {
    let window = Duration::from_secs(3);
    let app = spawn_with(Setup {
        lock_window: window,
        ..Setup::default()
    })
    .await;
    let user = app.register("brute@example.com").await;
    let email = user["email"].as_str().unwrap();
    let other = app.register("bystander@example.com").await;

    // Wrong password, unknown email, inactive user: one answer, about the same time.
    let mut timings = Vec::new();
    for (who, password) in [(email, "wrong password!"), ("nobody@example.com", PASSWORD)] {
        let started = std::time::Instant::now();
        app.login(who, password)
            .await
            .assert_problem(401, "invalid_credentials");
        timings.push(started.elapsed());
    }
    let (a, b) = (timings[0].as_secs_f64(), timings[1].as_secs_f64());
    assert!(
        a.max(b) < 5.0 * a.min(b) + 0.05,
        "timings differ: {timings:?}"
    );

    for _ in 0..4 {
        app.login(email, "wrong password!")
            .await
            .assert_problem(401, "invalid_credentials");
    }
    let sixth = app.login(email, "wrong password!").await;
    sixth.assert_problem(429, "too_many_attempts");
    let retry: u64 = sixth.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=window.as_secs()).contains(&retry),
        "Retry-After {retry}"
    );
    app.login(email, PASSWORD)
        .await
        .assert_problem(429, "too_many_attempts");
    // Other emails are not affected.
    assert_eq!(app.tokens_of(&other).await["token_type"], "Bearer");

    // Poll until the window has passed; the right password then works.
    let deadline = std::time::Instant::now() + window * 3;
    loop {
        let answer = app.login(email, PASSWORD).await;
        if answer.status == 200 {
            break;
        }
        answer.assert_problem(429, "too_many_attempts");
        assert!(std::time::Instant::now() < deadline, "still locked");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_key_file_signs_and_is_the_only_key_published() {
    use aws_lc_rs::signature::Ed25519KeyPair;
    use base64::engine::general_purpose::STANDARD;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let der = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(der.as_ref())
    );
    let dir = std::env::temp_dir();
    let path = dir.join(format!("emporium-key-{}.pem", uuid::Uuid::now_v7()));
    std::fs::write(&path, pem).unwrap();
    let app = spawn_with(Setup {
        key_file: Some(path.clone()),
        ..Setup::default()
    })
    .await;
    let user = app.register("file@example.com").await;
    let token = app.tokens_of(&user).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwks = app.http.get("/.well-known/jwks.json").await.body;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(jwt_parts(&token).0["kid"], keys[0]["kid"]);
    assert_eq!(
        app.http.with_bearer(&token).get("/users/me").await.status,
        200
    );
    let stored = app
        .db
        .scalar("SELECT count(*) AS n FROM users.signing_keys")
        .await;
    assert_eq!(stored, 0, "with a key file, no key is generated");

    // A file that is not an Ed25519 PKCS#8 PEM key stops the start with a clear error.
    let bad = dir.join(format!("emporium-bad-{}.pem", uuid::Uuid::now_v7()));
    std::fs::write(
        &bad,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let pool = kernel::db::pool(&app.db.url, &::users::SCHEMA, Default::default()).unwrap();
    let settings = ::users::TokenSettings {
        key_file: Some(bad.clone()),
        ..Default::default()
    };
    let error = ::users::Tokens::start(pool, settings)
        .await
        .err()
        .expect("a bad key file fails");
    assert!(format!("{error:#}").contains("emporium-bad-"), "{error:#}");
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(bad);
}

/// Concurrent wrong guesses for several emails at once: exactly five of each email's are
/// checked, the rest refused, however they interleave (each claim once counted the others
/// while a claim with a lower id was inserted but not committed, and let a sixth through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_count_each_other() {
    let app = spawn_app().await;
    let mut emails = Vec::new();
    for name in ["swarm", "horde", "flock"] {
        let user = app.register(&format!("{name}@example.com")).await;
        emails.push(user["email"].as_str().unwrap().to_owned());
    }
    let guesses = emails.iter().flat_map(|email| {
        (0..12).map(|i| {
            let (http, email) = (app.http.clone(), email.clone());
            async move {
                let body = json!({"grant_type": "password", "email": email,
                    "password": format!("wrong guess number {i}")});
                (email, http.post("/auth/token", body).await.status)
            }
        })
    });
    let answers = futures_util::future::join_all(guesses).await;
    for email in &emails {
        let statuses: Vec<u16> = answers
            .iter()
            .filter(|(e, _)| e == email)
            .map(|(_, s)| *s)
            .collect();
        let checked = statuses.iter().filter(|s| **s == 401).count();
        assert_eq!(
            checked, 5,
            "{email}: {checked} guesses were checked: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 401 || *s == 429),
            "{statuses:?}"
        );
        app.login(email, PASSWORD)
            .await
            .assert_problem(429, "too_many_attempts");
    }
}

/// The purger deletes refresh tokens once expired (a live one keeps refreshing) and failed
/// logins once out of the lock window (a recent one still counts).
#[tokio::test]
async fn the_purger_deletes_expired_refresh_tokens_and_stale_failures() {
    let app = spawn_app().await;
    let user = app.register("purge@example.com").await;
    let (old, live) = (app.tokens_of(&user).await, app.tokens_of(&user).await);
    for _ in 0..2 {
        assert_eq!(
            app.login("purge@example.com", "not the password")
                .await
                .status,
            401
        );
    }
    let mut conn = app.db.connect().await;
    use diesel_async::RunQueryDsl;
    diesel::sql_query(
        "UPDATE users.refresh_tokens SET expires_at = now() - interval '1 second' \
         WHERE id = (SELECT id FROM users.refresh_tokens ORDER BY created_at LIMIT 1)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "UPDATE users.login_failures SET failed_at = now() - interval '1 hour' \
         WHERE id = (SELECT min(id) FROM users.login_failures)",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    let purged = app.auth.purge().await.unwrap();
    assert_eq!(
        purged,
        ::users::Purged {
            refresh_tokens: 1,
            login_failures: 1
        }
    );
    let left = |table: &str| format!("SELECT count(*) AS n FROM users.{table}");
    assert_eq!(app.db.scalar(&left("refresh_tokens")).await, 1);
    assert_eq!(app.db.scalar(&left("login_failures")).await, 1);
    let refresh = |pair: &Value| json!({"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]});
    let expired = app.http.post("/auth/token", refresh(&old)).await;
    expired.assert_problem(401, "invalid_grant");
    let renewed = app.http.post("/auth/token", refresh(&live)).await;
    assert_eq!(renewed.status, 200, "{:#}", renewed.body);
    assert_eq!(app.auth.purge().await.unwrap(), ::users::Purged::default());
}
