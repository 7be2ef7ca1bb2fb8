//! The orders module's suite, end to end: both sides' routes over HTTP (the write side,
//! this crate, and the read side, `orders-read`, a dev-dependency of the same module)
//! against their schemas (`orders`, `orders_read`) in a fresh database per test, with
//! users, products and payments supplied as the in-memory fakes of their `-api` crates,
//! and the projection and the saga fed by the real event log (the payments module's by a
//! stand-in log, schema `payment_events`, that tests append payment events to).

mod access;
mod bounds;
mod commands;
mod confirm;
mod plans;
mod saga;
mod sweeper;
mod tidy;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use actix_web::web;
use async_trait::async_trait;
use eventlog::{DispatchSettings, Dispatcher, EventSource, LoggedEvent, PgEventSource, Position};
use kernel::db::{Pool, Schema};
use kernel::testing::{Answer, Http, TestDatabase, TestServer};
use orders::{Dependencies, FaultHook, OrderWriteSide, Settings};
use payments_api::PaymentApi;
use payments_api::testing::InMemoryPayments;
use products_api::testing::InMemoryProducts;
use serde_json::{Value, json};
use tokio::sync::mpsc as async_mpsc;
use users_api::testing::InMemoryUsers;

/// How long a test waits for a command to reach a gate, and a held command for its test.
const GATE_WAIT: Duration = Duration::from_secs(10);

/// A named point of a command, held by [`gates`]: the test learns when a command reaches
/// it ([`Gate::reached`]) and lets it go on ([`Gate::open`]), so it can act in between.
struct Gate {
    point: &'static str,
    reached: async_mpsc::UnboundedReceiver<()>,
    go: mpsc::Sender<()>,
}

impl Gate {
    /// Waits until a command stands at this gate.
    async fn reached(&mut self) {
        let reached = tokio::time::timeout(GATE_WAIT, self.reached.recv()).await;
        assert!(
            matches!(reached, Ok(Some(()))),
            "no command reached {}",
            self.point
        );
    }

    /// Lets the command standing at this gate go on.
    fn open(&self) {
        self.go.send(()).expect("the held command waits");
    }
}

/// A fault hook holding the first command that reaches each of `points` until its gate
/// opens (later ones pass: a race test holds one command and lets its rivals run).
/// The held command's thread waits in `block_in_place`, so only commands run on the
/// test's own runtime can be held (calls through `module`, not requests over HTTP, whose
/// actix workers are single-threaded); a command held longer than [`GATE_WAIT`] fails.
fn gates<const N: usize>(points: [&'static str; N]) -> (FaultHook, [Gate; N]) {
    let mut held = Vec::new();
    let gates = points.map(|point| {
        let (reached_tx, reached) = async_mpsc::unbounded_channel();
        let (go, go_rx) = mpsc::channel();
        held.push((point, AtomicBool::new(false), reached_tx, Mutex::new(go_rx)));
        Gate { point, reached, go }
    });
    let hook: FaultHook = Arc::new(move |point| {
        if let Some((_, taken, reached, go)) = held.iter().find(|(held, ..)| *held == point)
            && !taken.swap(true, Ordering::SeqCst)
        {
            reached.send(()).ok();
            tokio::task::block_in_place(|| go.lock().unwrap().recv_timeout(GATE_WAIT))
                .map_err(|_| anyhow::anyhow!("never let go on at {point}"))?;
        }
        Ok(())
    });
    (hook, gates)
}

/// Where the tests publish payment events (the payments module's log, without it).
const PAYMENT_LOG: Schema = Schema {
    name: "payment_events",
    migrations: &[&eventlog::MIGRATIONS],
};

/// A source with no events: the fakes publish none.
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

/// `POST /commands/orders` of `body` with `Idempotency-Key: key`: the status and the body.
async fn place_with_key(http: &Http, key: &str, body: &Value) -> (u16, Value) {
    let response = http
        .request("POST", "/commands/orders")
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json::<Value>().await.unwrap())
}

struct TestApp {
    /// Staff holding `admin`, who may do anything with orders: what most tests need. The
    /// rules of who may do what have their own tests (`access.rs`).
    http: Http,
    db: TestDatabase,
    users: Arc<InMemoryUsers>,
    products: Arc<InMemoryProducts>,
    payments: Arc<InMemoryPayments>,
    /// The stand-in payments log's pool.
    payment_log: Pool,
    module: OrderWriteSide,
    _dispatcher: Dispatcher,
    _server: TestServer,
}

async fn spawn_app() -> TestApp {
    spawn_with(spawn_settings()).await
}

/// The settings of [`spawn_app`]: nothing expires or is swept during a test.
fn spawn_settings() -> Settings {
    Settings {
        order_expiry: Duration::from_secs(1800),
        sweep_every: Duration::from_secs(3600),
        confirm_fence: Duration::from_secs(30),
        idempotency_ttl: Duration::from_secs(86_400),
        max_pending_orders: 20,
        faults: None,
    }
}

async fn spawn_with(settings: Settings) -> TestApp {
    spawn_paying_through(settings, |payments| payments).await
}

/// [`spawn_with`], the orders module reaching the payments fake through `through`.
async fn spawn_paying_through(
    settings: Settings,
    through: impl FnOnce(Arc<InMemoryPayments>) -> Arc<dyn PaymentApi>,
) -> TestApp {
    let db = kernel::testing::database(&[orders::SCHEMA, orders_read::SCHEMA, PAYMENT_LOG]).await;
    let write = kernel::db::pool(&db.url, &orders::SCHEMA, Default::default()).unwrap();
    let read = kernel::db::pool(&db.url, &orders_read::SCHEMA, Default::default()).unwrap();
    let payment_log = kernel::db::pool(&db.url, &PAYMENT_LOG, Default::default()).unwrap();
    let (users, products, payments) = (
        Arc::new(InMemoryUsers::default()),
        Arc::new(InMemoryProducts::default()),
        Arc::new(InMemoryPayments::default()),
    );
    let deps = Dependencies {
        users: users.clone(),
        products: products.clone(),
        payments: through(payments.clone()),
    };
    let orders_log: Arc<dyn EventSource> = Arc::new(PgEventSource {
        schema: "orders",
        pool: write.clone(),
    });
    let module = OrderWriteSide::new(
        write,
        deps,
        orders::Sources {
            orders: orders_log.clone(),
            payments: Arc::new(PgEventSource {
                schema: PAYMENT_LOG.name,
                pool: payment_log.clone(),
            }),
        },
        settings,
    );
    let read_side = orders_read::OrderReadSide::new(
        read,
        orders_read::Sources {
            orders: orders_log,
            users: Arc::new(Silent("users")),
            products: Arc::new(Silent("products")),
        },
    );
    let mut subscriptions = read_side.subscriptions();
    subscriptions.extend(module.subscriptions());
    let fast = DispatchSettings {
        poll_interval: Duration::from_millis(20),
        batch_size: 100,
    };
    let dispatcher = Dispatcher::start(&db.url, subscriptions, fast)
        .await
        .unwrap();
    let (commands, queries) = (module.commands(), read_side.queries());
    let server = TestServer::start(move |cfg| {
        cfg.app_data(web::Data::from(commands.clone()))
            .app_data(web::Data::from(queries.clone()));
        orders::routes(cfg);
        orders_read::routes(cfg);
    });
    TestApp {
        http: server.http.as_staff(&[kernel::Role::Admin]),
        db,
        users,
        products,
        payments,
        payment_log,
        module,
        _dispatcher: dispatcher,
        _server: server,
    }
}

impl TestApp {
    /// An active user and a product with `stock`, in the fakes.
    fn shop(&self, stock: i64) -> (String, String) {
        let user = self.users.add("buyer@example.com", "Buyer", true);
        let product = self.products.add("Lamp", "12.50", stock);
        (user.id.to_string(), product.id.to_string())
    }

    async fn place(&self, user: &str, product: &str, quantity: i64) -> Answer {
        self.http
            .post(
                "/commands/orders",
                json!({"user_id": user, "items": [{"product_id": product, "quantity": quantity}]}),
            )
            .await
    }

    async fn placed(&self, user: &str, product: &str, quantity: i64) -> String {
        let answer = self.place(user, product, quantity).await;
        assert_eq!(answer.status, 202, "{:#}", answer.body);
        answer.body["order_id"].as_str().unwrap().to_owned()
    }

    async fn command(&self, id: &str, command: &str, body: Value) -> Answer {
        self.http
            .post(&format!("/commands/orders/{id}/{command}"), body)
            .await
    }

    /// The read model's view once it reaches `version` (asked up to five times: one
    /// `min_version` wait is 2 s, which a loaded machine can outlast).
    async fn view(&self, id: &str, version: i64) -> Value {
        let mut answer = None;
        for _ in 0..5 {
            let read = self
                .http
                .get(&format!("/queries/orders/{id}?min_version={version}"))
                .await;
            let caught_up = read.status == 200 && read.header("x-read-model-stale").is_none();
            answer = Some(read);
            if caught_up {
                break;
            }
        }
        let answer = answer.unwrap();
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        assert_eq!(
            answer.header("x-read-model-stale"),
            None,
            "read model never reached version {version}"
        );
        answer.body
    }

    async fn stock(&self, product: &str) -> (i64, i64) {
        use products_api::ProductApi;
        let p = self.products.get(product.parse().unwrap()).await.unwrap();
        (p.stock, p.reserved)
    }

    async fn wait_until(&self, what: &str, mut done: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done().await {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
