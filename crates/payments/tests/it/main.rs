//! The payments module's suite: its API called directly (charges, refunds, concurrency)
//! and its routes over HTTP, against its own schema in a fresh Postgres database per test,
//! with the simulated gateway counting what it really charged.

mod access;
mod charges;
mod contract;
mod gateway;
mod pending;
mod reconciler;
mod refunds;
mod routes;
mod tidy;
mod voids;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use kernel::testing::{Http, TestDatabase, TestServer};
use kernel::{Money, PaymentId};
use payments::{
    PaymentGateway, PaymentService, PaymentSettings, SimulatedGateway, SimulatedSettings,
};
use payments_api::testing::KnownOwners;
use payments_api::{OrderOwners, PaymentApi};
use serde_json::Value;

struct TestApp {
    /// Staff holding `support`, who sees every payment. Who sees which is `access.rs`'s.
    http: Http,
    /// Whose the tests' orders are, for the routes (`OrderOwners`).
    owners: Arc<KnownOwners>,
    db: TestDatabase,
    pool: kernel::db::Pool,
    api: Arc<dyn PaymentApi>,
    gateway: Arc<SimulatedGateway>,
    _server: TestServer,
}

async fn spawn_app() -> TestApp {
    let db = kernel::testing::database(&[payments::SCHEMA, payments::GATEWAY_SCHEMA]).await;
    let settings = kernel::db::PoolSettings {
        max_size: 10,
        ..Default::default()
    };
    let pool = kernel::db::pool(&db.url, &payments::SCHEMA, settings).expect("pool");
    let gateway = Arc::new(simulated_gateway(&db, SLOW_ANSWER));
    let api: Arc<dyn PaymentApi> =
        Arc::new(PaymentService::new(pool.clone(), gateway.clone(), SETTINGS));
    let routes_api = api.clone();
    let owners = Arc::new(KnownOwners::default());
    let routes_owners: Arc<dyn OrderOwners> = owners.clone();
    let server = TestServer::start(move |cfg| {
        cfg.app_data(web::Data::from(routes_api.clone()))
            .app_data(web::Data::from(routes_owners.clone()));
        payments::routes(cfg);
    });
    TestApp {
        http: server.http.as_staff(&[kernel::Role::Support]),
        owners,
        db,
        pool,
        api,
        gateway,
        _server: server,
    }
}

/// The service's deadline on each gateway call in these tests: short, yet long enough for
/// a prompt answer on a loaded machine (a charge that finds another pending waits this).
const GATEWAY_TIMEOUT: Duration = Duration::from_secs(1);
const SETTINGS: PaymentSettings = PaymentSettings {
    gateway_timeout: GATEWAY_TIMEOUT,
    faults: None,
};
/// How long the simulated gateway's slow tokens take to answer in these tests: past the
/// deadline.
const SLOW_ANSWER: Duration = Duration::from_secs(2);

/// A simulated gateway over `db`'s `gateway` schema, with a pool of its own.
fn simulated_gateway(db: &TestDatabase, slow_answer: Duration) -> SimulatedGateway {
    let pool = kernel::db::pool(&db.url, &payments::GATEWAY_SCHEMA, Default::default())
        .expect("gateway pool");
    SimulatedGateway::new(pool, SimulatedSettings { slow_answer })
}

impl TestApp {
    /// Another service on the same database, with another gateway.
    fn service_with(&self, gateway: Arc<dyn PaymentGateway>) -> PaymentService {
        PaymentService::new(self.pool.clone(), gateway, SETTINGS)
    }

    /// Another service on the same database and gateway, with these settings.
    fn service_with_settings(&self, settings: PaymentSettings) -> PaymentService {
        PaymentService::new(self.pool.clone(), self.gateway.clone(), settings)
    }

    async fn count(&self, sql: &str) -> i64 {
        self.db.scalar(sql).await
    }

    async fn payments(&self) -> i64 {
        self.count("SELECT count(*) AS n FROM payments.payments")
            .await
    }

    async fn events(&self) -> i64 {
        self.count("SELECT count(*) AS n FROM payments.events")
            .await
    }

    /// How many events of `event_type` with exactly this version and payload the payment
    /// has that were written by the transaction that last wrote the payment's row.
    async fn events_with_the_row(
        &self,
        payment_id: PaymentId,
        event_type: &str,
        version: i64,
        payload: &Value,
    ) -> i64 {
        // `events.xid` is the 64-bit transaction id, `xmin` its low 32 bits.
        self.count(&format!(
            "SELECT count(*) AS n FROM payments.events e JOIN payments.payments p \
             ON p.id = e.aggregate_id \
             WHERE p.id = '{payment_id}' AND e.event_type = '{event_type}' \
             AND e.aggregate_version = {version} AND e.payload = '{payload}'::jsonb \
             AND e.xid::text::bigint % 4294967296 = p.xmin::text::bigint"
        ))
        .await
    }
}

fn money(text: &str) -> Money {
    Money::parse(text).expect("valid money")
}
