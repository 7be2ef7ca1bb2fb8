//! The users module's suite: its routes alone over HTTP, against its own schema in a
//! fresh Postgres database per test.

mod input;
mod tidy;
mod users;

use std::sync::Arc;

use actix_web::web;
use kernel::testing::{Http, TestDatabase, TestServer};
use users_api::UserApi;

struct TestApp {
    http: Http,
    db: TestDatabase,
    _server: TestServer,
}

async fn spawn_app() -> TestApp {
    let db = kernel::testing::database(&[::users::SCHEMA]).await;
    let pool = kernel::db::pool(&db.url, &::users::SCHEMA, Default::default()).expect("pool");
    let api: Arc<dyn UserApi> = Arc::new(::users::UserService::new(pool));
    let server = TestServer::start(move |cfg| {
        cfg.app_data(web::Data::from(api.clone()));
        ::users::routes(cfg);
    });
    TestApp {
        http: server.http.clone(),
        db,
        _server: server,
    }
}

impl TestApp {
    async fn users_in_db(&self) -> i64 {
        self.db
            .scalar("SELECT count(*) AS n FROM users.users")
            .await
    }
}
