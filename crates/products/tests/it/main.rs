//! The products module's suite: its routes over HTTP and its reservation API called
//! directly, against its own schema in a fresh Postgres database per test.

mod access;
mod catalog;
mod input;
mod reservations;
mod tidy;

use std::sync::Arc;

use actix_web::web;
use kernel::OrderId;
use kernel::db::{Pool, Schema, Unit};
use kernel::testing::{Http, TestDatabase, TestServer};
use products_api::{ProductApi, ProductError, ReservationLine};
use serde_json::{Value, json};

struct TestApp {
    /// Staff holding `catalog`, who may change the catalog. Who may do what is
    /// `access.rs`'s.
    http: Http,
    db: TestDatabase,
    api: Arc<dyn ProductApi>,
    /// A pool of [`CALLER`], whose transactions the reservations run in.
    caller: Pool,
    _server: TestServer,
}

/// Another module, whose transactions reservations take part in (as the orders module's
/// placements do).
const CALLER: Schema = Schema {
    name: "caller",
    migrations: &[],
};

/// `api.reserve` in a transaction of a `caller` connection: committed when the reservation
/// succeeds, rolled back when it fails, as a placement does.
async fn reserve(
    api: &dyn ProductApi,
    caller: &Pool,
    order: OrderId,
    lines: &[ReservationLine],
) -> Result<(), ProductError> {
    let mut conn = kernel::db::connect(caller).await?;
    kernel::db::transaction(&mut conn, async |conn| {
        let mut unit = Unit::new(conn, &CALLER);
        api.reserve(&mut unit, order, lines).await
    })
    .await
}

async fn spawn_app() -> TestApp {
    let db = kernel::testing::database(&[products::SCHEMA, CALLER]).await;
    let settings = kernel::db::PoolSettings {
        max_size: 10,
        ..Default::default()
    };
    // As the app's: the catalog's statements on generic plans.
    let catalog = kernel::db::PoolSettings {
        generic_plans: true,
        ..settings
    };
    let pool = kernel::db::pool(&db.url, &products::SCHEMA, catalog).expect("pool");
    let caller = kernel::db::pool(&db.url, &CALLER, settings).expect("pool");
    let api: Arc<dyn ProductApi> = Arc::new(products::ProductService::new(pool));
    let routes_api = api.clone();
    let server = TestServer::start(move |cfg| {
        cfg.app_data(web::Data::from(routes_api.clone()));
        products::routes(cfg);
    });
    TestApp {
        http: server.http.as_staff(&[kernel::Role::Catalog]),
        db,
        api,
        caller,
        _server: server,
    }
}

impl TestApp {
    /// [`reserve`] through this app.
    async fn reserve(&self, order: OrderId, lines: &[ReservationLine]) -> Result<(), ProductError> {
        reserve(self.api.as_ref(), &self.caller, order, lines).await
    }

    /// Creates a product over HTTP and returns its JSON.
    async fn product(&self, name: &str, price: &str, stock: i64) -> Value {
        let answer = self
            .http
            .post(
                "/products",
                json!({"name": name, "price": price, "stock": stock}),
            )
            .await;
        assert_eq!(answer.status, 201, "{:#}", answer.body);
        answer.body
    }

    async fn stock_and_reserved(&self, id: &str) -> (i64, i64) {
        let body = self.http.get(&format!("/products/{id}")).await.body;
        (
            body["stock"].as_i64().unwrap(),
            body["reserved"].as_i64().unwrap(),
        )
    }
}
