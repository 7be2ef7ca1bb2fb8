//! The read side's suite, on its own: its routes over HTTP against its schema
//! (`orders_read`) in a fresh database per test, fed through the real event log by
//! stand-in logs (schemas `order_events`, `user_events`, `product_events`: the event-log
//! tables alone) that tests append events to, as the other modules would; and the
//! projection's one code path (`projection.rs`).

mod generations;
mod projection;
mod queries;
mod rebuild;
mod renames;
mod tidy;
mod totals;
mod versions;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use async_trait::async_trait;
use eventlog::{DispatchSettings, Dispatcher, EventSource, LoggedEvent, PgEventSource, Position};
use kernel::db::{Pool, Schema};
use kernel::testing::{Http, TestDatabase, TestServer};
use kernel::{Money, NewEvent, OrderId, ProductId, UserId};
use orders_api::{OrderStatus, events};
use orders_read::{OrderReadSide, Sources};
use serde_json::Value;

/// Where the tests publish order events (the write side's log, without the write side).
const ORDER_LOG: Schema = Schema {
    name: "order_events",
    migrations: &[&eventlog::MIGRATIONS],
};
/// Where the tests publish user and product events.
const USER_LOG: Schema = Schema {
    name: "user_events",
    migrations: &[&eventlog::MIGRATIONS],
};
const PRODUCT_LOG: Schema = Schema {
    name: "product_events",
    migrations: &[&eventlog::MIGRATIONS],
};

/// A source with no events: these tests publish no user or product events.
struct Silent(&'static str);

#[async_trait]
impl EventSource for Silent {
    fn name(&self) -> &'static str {
        self.0
    }
    async fn read(&self, _: Position, _: i64) -> anyhow::Result<Vec<LoggedEvent>> {
        Ok(Vec::new())
    }
    async fn backlog(&self, _: Position) -> anyhow::Result<eventlog::Backlog> {
        Ok(Default::default())
    }
}

struct TestApp {
    http: Http,
    db: TestDatabase,
    /// The order, user and product logs' pools.
    log: Pool,
    users: Pool,
    products: Pool,
    side: OrderReadSide,
    _dispatcher: Dispatcher,
    _server: TestServer,
}

async fn spawn_app() -> TestApp {
    let db =
        kernel::testing::database(&[ORDER_LOG, USER_LOG, PRODUCT_LOG, orders_read::SCHEMA]).await;
    let pool = |schema| kernel::db::pool(&db.url, schema, Default::default()).unwrap();
    let (log, users, products) = (pool(&ORDER_LOG), pool(&USER_LOG), pool(&PRODUCT_LOG));
    let read = pool(&orders_read::SCHEMA);
    let source = |schema: &Schema, pool: &Pool| -> Arc<dyn EventSource> {
        Arc::new(PgEventSource {
            schema: schema.name,
            pool: pool.clone(),
        })
    };
    let side = OrderReadSide::new(
        read,
        Sources {
            orders: source(&ORDER_LOG, &log),
            users: source(&USER_LOG, &users),
            products: source(&PRODUCT_LOG, &products),
        },
    );
    let fast = DispatchSettings {
        poll_interval: Duration::from_millis(20),
        batch_size: 100,
    };
    let dispatcher = Dispatcher::start(&db.url, side.subscriptions(), fast)
        .await
        .unwrap();
    let queries = side.queries();
    let server = TestServer::start(move |cfg| {
        cfg.app_data(web::Data::from(queries.clone()));
        orders_read::routes(cfg);
    });
    TestApp {
        http: server.http.as_staff(&[kernel::Role::Fulfilment]),
        db,
        log,
        users,
        products,
        side,
        _dispatcher: dispatcher,
        _server: server,
    }
}

/// Appends `events` to the log of `schema` in one transaction, as a module's command would.
async fn publish(pool: &Pool, schema: &Schema, events: &[NewEvent]) {
    let mut conn = kernel::db::connect(pool).await.unwrap();
    eventlog::append(&mut conn, schema.name, events)
        .await
        .unwrap();
}

impl TestApp {
    /// A user and a product (ids only: the read side knows them from events alone).
    fn shop(&self) -> (String, String) {
        (
            UserId::generate().to_string(),
            ProductId::generate().to_string(),
        )
    }

    async fn publish(&self, event: NewEvent) {
        publish(&self.log, &ORDER_LOG, &[event]).await;
    }

    /// Publishes `order.created` (aggregate version 1) as a placement would; the order's id.
    async fn placed(&self, user: &str, product: &str, quantity: i64) -> String {
        let id = OrderId::generate();
        let price = Money::parse("12.50").unwrap();
        let created = events::OrderCreated {
            user_id: user.parse().unwrap(),
            user_name: "Buyer".to_owned(),
            user_email: "buyer@example.com".to_owned(),
            items: vec![
                events::OrderLine::new(
                    product.parse().unwrap(),
                    "Lamp".to_owned(),
                    quantity,
                    price,
                )
                .expect("a line"),
            ],
            total: price.checked_mul(quantity as u32).unwrap(),
        };
        self.publish(NewEvent::new(events::ORDER_CREATED, id, 1, &created))
            .await;
        id.to_string()
    }

    /// Publishes `order.cancelled` of a pending order (version 2).
    async fn cancelled(&self, id: &str, reason: &str) {
        let id: OrderId = id.parse().unwrap();
        let cancelled = events::OrderCancelled {
            reason: reason.to_owned(),
            previous_status: OrderStatus::Pending,
        };
        self.publish(NewEvent::new(events::ORDER_CANCELLED, id, 2, &cancelled))
            .await;
    }

    /// The read model's view once it reaches `version`.
    async fn view(&self, id: &str, version: i64) -> Value {
        let answer = self
            .http
            .get(&format!("/queries/orders/{id}?min_version={version}"))
            .await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        assert_eq!(
            answer.header("x-read-model-stale"),
            None,
            "read model never reached version {version}"
        );
        answer.body
    }
}

/// Where the counts behind list totals (`orders_read.order_counts`) and the orders disagree,
/// as JSON rows (`[]` when they agree): each side's rows the other lacks.
const MISCOUNTED: &str = "WITH counts AS (SELECT generation, user_id, status, n FROM orders_read.order_counts), \
       truth AS (SELECT o.generation, w.user_id, o.status, count(*) AS n FROM orders_read.orders o \
         CROSS JOIN LATERAL (VALUES (o.user_id), ('00000000-0000-0000-0000-000000000000'::uuid)) AS w(user_id) \
         GROUP BY 1, 2, 3) \
     SELECT coalesce(json_agg(d), '[]')::text AS rows FROM ( \
       (SELECT 'counted' AS side, * FROM counts EXCEPT SELECT 'counted', * FROM truth) \
       UNION ALL (SELECT 'actual', * FROM truth EXCEPT SELECT 'actual', * FROM counts)) d";

async fn miscounted(conn: &mut diesel_async::AsyncPgConnection) -> String {
    #[derive(diesel::QueryableByName)]
    struct Rows {
        #[diesel(sql_type = diesel::sql_types::Text)]
        rows: String,
    }
    let rows: Rows = diesel_async::RunQueryDsl::get_result(diesel::sql_query(MISCOUNTED), conn)
        .await
        .unwrap();
    rows.rows
}
