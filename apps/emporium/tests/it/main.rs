//! The whole process: every module real, together, over HTTP, on a fresh database.

mod binary;
mod database;
mod routes;

use emporium::Config;
use kernel::testing::{Http, TestDatabase};

struct TestApp {
    http: Http,
    db: TestDatabase,
    _handle: actix_web::dev::ServerHandle,
}

/// Starts the real app (`emporium::start`, as `emporium serve` does) on port 0.
async fn spawn_app() -> TestApp {
    let db = kernel::testing::database(&emporium::SCHEMAS).await;
    let running = emporium::start(&Config::for_database(&db.url))
        .await
        .expect("start emporium");
    let http = Http::new(format!("http://{}", running.address));
    let handle = running.handle.clone();
    tokio::spawn(running.wait());
    TestApp {
        http,
        db,
        _handle: handle,
    }
}
