//! The users module's suite: its routes alone over HTTP, against its own schema in a
//! fresh Postgres database per test.

mod access;
mod input;
mod tidy;
mod tokens;
mod users;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use kernel::Role;
use kernel::testing::{Answer, Http, TestDatabase, TestServer};
use serde_json::{Value, json};
use users_api::UserApi;

/// The password every test user registers with.
const PASSWORD: &str = "correct horse battery staple";
/// The break-glass token of every test app.
const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

struct TestApp {
    /// Anonymous.
    http: Http,
    /// `Authorization: Bearer <ADMIN_TOKEN>`.
    admin_token: Http,
    db: TestDatabase,
    auth: Arc<::users::Auth>,
    _server: TestServer,
}

/// How a test app is set up.
#[derive(Clone)]
struct Setup {
    lock_window: Duration,
    access_ttl: Duration,
    key_file: Option<std::path::PathBuf>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            lock_window: Duration::from_secs(15 * 60),
            access_ttl: Duration::from_secs(15 * 60),
            key_file: None,
        }
    }
}

async fn spawn_app() -> TestApp {
    spawn_with(Setup::default()).await
}

async fn spawn_with(setup: Setup) -> TestApp {
    let db = kernel::testing::database(&[::users::SCHEMA]).await;
    spawn_on(db, setup).await
}

/// One more instance of the module on `db` (its own keys cache, its own token cache).
async fn spawn_on(db: TestDatabase, setup: Setup) -> TestApp {
    let pool = kernel::db::pool(&db.url, &::users::SCHEMA, Default::default()).expect("pool");
    let api: Arc<dyn UserApi> = Arc::new(::users::UserService::new(pool.clone()));
    let settings = ::users::TokenSettings {
        access_ttl: setup.access_ttl,
        key_file: setup.key_file,
        ..Default::default()
    };
    let tokens = ::users::Tokens::start(pool.clone(), settings)
        .await
        .expect("signing keys");
    let auth = Arc::new(::users::Auth::new(
        pool,
        tokens.clone(),
        ::users::LoginLock {
            window: setup.lock_window,
        },
    ));
    let authenticator = kernel::auth::Authenticator {
        verifier: Some(tokens),
        admin_token: Some(ADMIN_TOKEN.to_owned()),
    };
    let routes_auth = auth.clone();
    let server = TestServer::start(move |cfg| {
        cfg.app_data(web::Data::from(api.clone()))
            .app_data(web::Data::from(routes_auth.clone()))
            .app_data(web::Data::new(authenticator.clone()));
        ::users::routes(cfg);
    });
    TestApp {
        http: server.http.clone(),
        admin_token: server.http.with_bearer(ADMIN_TOKEN),
        db,
        auth,
        _server: server,
    }
}

impl TestApp {
    async fn users_in_db(&self) -> i64 {
        self.db
            .scalar("SELECT count(*) AS n FROM users.users")
            .await
    }

    /// Registers a user with [`PASSWORD`]; answers the user JSON.
    async fn register(&self, email: &str) -> Value {
        let answer = self
            .http
            .post(
                "/users",
                json!({"email": email, "name": email.split('@').next(), "password": PASSWORD}),
            )
            .await;
        assert_eq!(answer.status, 201, "{:#}", answer.body);
        answer.body
    }

    /// `POST /auth/token` with the password grant.
    async fn login(&self, email: &str, password: &str) -> Answer {
        self.http
            .post(
                "/auth/token",
                json!({"grant_type": "password", "email": email, "password": password}),
            )
            .await
    }

    /// A token pair of the user (registered with [`PASSWORD`]).
    async fn tokens_of(&self, user: &Value) -> Value {
        let answer = self.login(user["email"].as_str().unwrap(), PASSWORD).await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        answer.body
    }

    /// A client logged in as this user.
    async fn as_customer(&self, user: &Value) -> Http {
        let pair = self.tokens_of(user).await;
        self.http
            .with_bearer(pair["access_token"].as_str().unwrap())
    }

    /// A new user holding `role`, and a client logged in as them.
    async fn as_staff(&self, role: Role) -> (Value, Http) {
        let user = self
            .register(&format!(
                "{role}-{}@example.com",
                uuid::Uuid::now_v7().simple()
            ))
            .await;
        let granted = self
            .admin_token
            .put(
                &format!("/users/{}/roles", user["id"].as_str().unwrap()),
                json!({"roles": [role.as_str()]}),
            )
            .await;
        assert_eq!(granted.status, 200, "{:#}", granted.body);
        let client = self.as_customer(&granted.body).await;
        (granted.body, client)
    }
}

/// `/users/{id}` of a user JSON.
fn path(user: &Value) -> String {
    format!("/users/{}", user["id"].as_str().unwrap())
}
