//! The whole process: every module real, together, over HTTP, on a fresh database.

mod access;
mod audit;
pub(crate) mod binary;
mod database;
pub(crate) mod guarantees;
mod http;
mod invariants;
mod limits;
mod logs;
mod metrics;
mod nats;
pub(crate) mod openapi;
mod operations;
mod orders;
mod outages;
mod routes;

use emporium::{Config, Hooks};
use kernel::testing::{Http, TestDatabase};
use serde_json::{Value, json};

/// The password of every user the app suite registers.
const PASSWORD: &str = "correct horse battery staple";

/// Access tokens of the users [`TestApp::user`] made, by user id (ids are unique, so one
/// map serves every test).
fn sessions() -> std::sync::MutexGuard<'static, std::collections::HashMap<String, String>> {
    static SESSIONS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, String>>,
    > = std::sync::OnceLock::new();
    SESSIONS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

struct TestApp {
    /// Logged in as the database's staff member holding `admin` ([`STAFF_EMAIL`]), who
    /// may do anything but change another user's password: what most tests need. Who
    /// may do what is `access.rs`'s; [`Http::anonymous`] calls without a token.
    http: Http,
    db: TestDatabase,
    handle: actix_web::dev::ServerHandle,
}

/// The admin every test database gets (made once per database, shared by its instances).
const STAFF_EMAIL: &str = "staff@emporium.test";

/// The admin's access token, per database url.
fn staff_tokens() -> std::sync::MutexGuard<'static, std::collections::HashMap<String, String>> {
    static TOKENS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, String>>,
    > = std::sync::OnceLock::new();
    TOKENS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A fresh database with every schema migrated.
async fn database() -> TestDatabase {
    let schemas: Vec<_> = emporium::SCHEMAS
        .iter()
        .chain(emporium::READ_SCHEMAS.iter())
        .chain(emporium::SIMULATED_SCHEMAS.iter())
        .copied()
        .collect();
    kernel::testing::database(&schemas).await
}

/// Starts the real app (`emporium::start`, as `emporium serve` does) on port 0.
async fn spawn_app() -> TestApp {
    spawn_on(database().await, Hooks::default()).await
}

/// Starts one more process of the app on `db`.
async fn spawn_on(db: TestDatabase, hooks: Hooks) -> TestApp {
    spawn_with(db, Config::for_database, hooks).await
}

async fn spawn_with(
    db: TestDatabase,
    config: impl FnOnce(&str) -> Config,
    hooks: Hooks,
) -> TestApp {
    let config = config(&db.url);
    let running = emporium::start_with(&config, hooks)
        .await
        .expect("start emporium");
    let anonymous = Http::new(format!("http://{}", running.address));
    let handle = running.handle.clone();
    tokio::spawn(running.wait());
    let mut app = TestApp {
        http: anonymous,
        db,
        handle,
    };
    let known = staff_tokens().get(&app.db.url).cloned();
    let token = match known {
        Some(token) => token,
        None => {
            app.register(STAFF_EMAIL).await;
            emporium::grant(&config, STAFF_EMAIL, &[kernel::Role::Admin])
                .await
                .expect("grant admin");
            let token = app.login(STAFF_EMAIL).await;
            staff_tokens().insert(app.db.url.clone(), token.clone());
            token
        }
    };
    app.http = app.http.with_bearer(&token);
    app
}

impl TestApp {
    /// Stops this process's server and background work, as a crash would (requests in
    /// flight are dropped).
    async fn stop(&self) {
        self.handle.stop(false).await;
    }

    /// Registers a user with [`PASSWORD`] and logs them in (see [`TestApp::as_user`]);
    /// answers their id.
    async fn user(&self, email: &str) -> String {
        let id = self.register(email).await;
        let token = self.login(email).await;
        sessions().insert(id.clone(), token);
        id
    }

    /// Registers a user with [`PASSWORD`]; answers their id.
    async fn register(&self, email: &str) -> String {
        let answer = self
            .http
            .anonymous()
            .post(
                "/users",
                json!({"email": email, "name": email.split('@').next(), "password": PASSWORD}),
            )
            .await;
        assert_eq!(answer.status, 201, "{:#}", answer.body);
        answer.body["id"].as_str().unwrap().to_owned()
    }

    /// A new staff member holding `roles`, logged in.
    async fn as_staff(&self, roles: &[kernel::Role]) -> Http {
        let names: Vec<_> = roles.iter().map(|r| r.as_str()).collect();
        let email = format!(
            "{}-{}@emporium.test",
            names.join("-"),
            uuid::Uuid::now_v7().simple()
        );
        let id = self.register(&email).await;
        let granted = self
            .http
            .put(&format!("/users/{id}/roles"), json!({"roles": names}))
            .await;
        assert_eq!(granted.status, 200, "{:#}", granted.body);
        let token = self.login(&email).await;
        self.http.with_bearer(&token)
    }

    /// An access token of the user with this email (registered with [`PASSWORD`]).
    async fn login(&self, email: &str) -> String {
        let answer = self
            .http
            .anonymous()
            .post(
                "/auth/token",
                json!({"grant_type": "password", "email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        answer.body["access_token"].as_str().unwrap().to_owned()
    }

    /// A client logged in as the user [`TestApp::user`] made (on any instance of the
    /// database: every instance verifies every other's tokens).
    fn as_user(&self, id: &str) -> Http {
        let token = sessions()
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("user {id} was not made by TestApp::user"));
        self.http.with_bearer(&token)
    }

    async fn product(&self, name: &str, price: &str, stock: i64) -> String {
        let answer = self
            .http
            .post(
                "/products",
                json!({"name": name, "price": price, "stock": stock}),
            )
            .await;
        assert_eq!(answer.status, 201, "{:#}", answer.body);
        answer.body["id"].as_str().unwrap().to_owned()
    }

    async fn order(&self, user: &str, lines: &[(&str, i64)]) -> kernel::testing::Answer {
        let items: Vec<Value> = lines
            .iter()
            .map(|(p, q)| json!({"product_id": p, "quantity": q}))
            .collect();
        self.http
            .post("/commands/orders", json!({"user_id": user, "items": items}))
            .await
    }

    async fn placed(&self, user: &str, lines: &[(&str, i64)]) -> String {
        let answer = self.order(user, lines).await;
        assert_eq!(answer.status, 202, "{:#}", answer.body);
        answer.body["order_id"].as_str().unwrap().to_owned()
    }

    async fn command(&self, id: &str, command: &str, body: Value) -> kernel::testing::Answer {
        self.http
            .post(&format!("/commands/orders/{id}/{command}"), body)
            .await
    }

    async fn stock(&self, product: &str) -> (i64, i64) {
        let p = self.http.get(&format!("/products/{product}")).await.body;
        (
            p["stock"].as_i64().unwrap(),
            p["reserved"].as_i64().unwrap(),
        )
    }
}

pub(crate) async fn wait_for(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ready().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
