//! The whole process: every module real, together, over HTTP, on a fresh database.

mod audit;
mod binary;
mod database;
mod guarantees;
mod invariants;
mod openapi;
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
    http: Http,
    db: TestDatabase,
    handle: actix_web::dev::ServerHandle,
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
    let running = emporium::start_with(&config(&db.url), hooks)
        .await
        .expect("start emporium");
    let http = Http::new(format!("http://{}", running.address));
    let handle = running.handle.clone();
    tokio::spawn(running.wait());
    TestApp { http, db, handle }
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
        let answer = self
            .http
            .post(
                "/users",
                json!({"email": email, "name": email.split('@').next(), "password": PASSWORD}),
            )
            .await;
        assert_eq!(answer.status, 201, "{:#}", answer.body);
        let id = answer.body["id"].as_str().unwrap().to_owned();
        let token = self.login(email).await;
        sessions().insert(id.clone(), token);
        id
    }

    /// An access token of the user with this email (registered with [`PASSWORD`]).
    async fn login(&self, email: &str) -> String {
        let answer = self
            .http
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
