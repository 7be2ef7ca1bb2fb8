//! The modules assembled: their pools (and the logs' delivery pools), services, routes and
//! subscriptions, from a [`Config`] and test [`Hooks`].

use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::web;
use eventlog::{EventSource, PgEventSource, PublishedLog};
use kernel::db::{self, Pool, PoolSettings, Schema};
use orders_api::{OrderCommands, OrderQueries};
use payments_api::PaymentApi;
use products_api::ProductApi;
use users_api::UserApi;

use crate::{Config, Mount, endpoints, ops};

/// Test hooks: what a test may change about a process it starts.
#[derive(Clone)]
pub struct Hooks {
    /// Run event delivery and the sweeper (a process that "died" does not).
    pub background: bool,
    /// Stop order and payment commands at named points, as a crash would.
    pub faults: Option<orders::FaultHook>,
    /// How often the sweeper runs.
    pub sweep_every: Duration,
    /// How often the payment reconciler runs.
    pub reconcile_every: Duration,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            background: true,
            faults: None,
            sweep_every: Duration::from_secs(1),
            reconcile_every: Duration::from_secs(1),
        }
    }
}

/// The constructed modules, their pools and their event logs.
#[derive(Clone)]
pub struct Modules {
    pub users: Arc<dyn UserApi>,
    pub auth: Arc<users::Auth>,
    pub products: Arc<dyn ProductApi>,
    pub payments: Arc<dyn PaymentApi>,
    pub order_commands: Arc<dyn OrderCommands>,
    pub order_queries: Arc<dyn OrderQueries>,
    /// Whose an order is, for the payments routes.
    pub order_owners: Arc<dyn payments_api::OrderOwners>,
    pub orders: Arc<orders::OrderWriteSide>,
    pub orders_read: Arc<orders_read::OrderReadSide>,
    pub(crate) payment_service: Arc<payments::PaymentService>,
    pub(crate) reconcile_every: Duration,
    pools: Vec<(&'static str, Pool)>,
    /// One connection per database for `/health/ready`, apart from the serving pools, so
    /// that busy pools do not make the process look unready.
    pub(crate) health: Vec<(&'static str, Pool)>,
    published_logs: Vec<PublishedLog>,
    admin_token: Option<String>,
}

/// Connections of each log's delivery pool (see `Modules::new`): its subscribers read it
/// one batch at a time.
const DELIVERY_POOL_SIZE: usize = 2;

impl Modules {
    pub async fn new(config: &Config, hooks: &Hooks) -> anyhow::Result<Modules> {
        let settings = PoolSettings {
            max_size: config.db_pool_size,
            ..PoolSettings::default()
        };
        let pool = |url: &str, schema: &Schema| db::pool(url, schema, settings);
        let users_pool = pool(&config.database_url, &users::SCHEMA)?;
        // Every statement of the catalog is by key; the placement's price look-up takes
        // its products as an array.
        let products_pool = db::pool(
            &config.database_url,
            &products::SCHEMA,
            PoolSettings {
                generic_plans: true,
                ..settings
            },
        )?;
        let payments_pool = pool(&config.database_url, &payments::SCHEMA)?;
        let orders_pool = pool(&config.database_url, &orders::SCHEMA)?;
        let read_pool = pool(config.read_database_url(), &orders_read::SCHEMA)?;
        let gateway_pool = pool(&config.database_url, &payments::GATEWAY_SCHEMA)?;
        let probe = PoolSettings {
            max_size: 1,
            ..PoolSettings::default()
        };
        let health = vec![
            (
                "database",
                db::pool(&config.database_url, &users::SCHEMA, probe)?,
            ),
            (
                "read database",
                db::pool(config.read_database_url(), &orders_read::SCHEMA, probe)?,
            ),
        ];

        let users: Arc<dyn UserApi> = Arc::new(users::UserService::new(users_pool.clone()));
        let tokens = users::Tokens::start(users_pool.clone(), config.token_settings()).await?;
        let auth = Arc::new(users::Auth::new(
            users_pool.clone(),
            tokens,
            users::LoginLock {
                window: config.login_lock_window,
            },
        ));
        let products: Arc<dyn ProductApi> =
            Arc::new(products::ProductService::new(products_pool.clone()));
        let gateway = Arc::new(payments::SimulatedGateway::new(
            gateway_pool.clone(),
            payments::SimulatedSettings {
                slow_answer: config.payment_gateway_timeout * 2,
            },
        ));
        let payment_service = Arc::new(payments::PaymentService::new(
            payments_pool.clone(),
            gateway,
            payments::PaymentSettings {
                gateway_timeout: config.payment_gateway_timeout,
                faults: hooks.faults.clone(),
            },
        ));
        let payments: Arc<dyn PaymentApi> = payment_service.clone();
        let deps = orders::Dependencies {
            users: users.clone(),
            products: products.clone(),
            payments: payments.clone(),
        };
        let order_settings = orders::Settings {
            order_expiry: config.order_expiry,
            sweep_every: hooks.sweep_every,
            // A charge waits at most one gateway deadline for another pending payment, then
            // calls the gateway under one more; the fence outlasts both.
            confirm_fence: config.payment_gateway_timeout * 2 + Duration::from_secs(10),
            idempotency_ttl: config.idempotency_ttl,
            max_pending_orders: config.max_pending_orders,
            faults: hooks.faults.clone(),
        };
        // Delivery reads each log on a small pool of its own. On the module's pool a
        // subscriber's read queued behind the module's requests: under a burst of
        // placements each step of the projection waited its turn behind hundreds of them,
        // and it fell behind for good (the bench's lag phase, at 0.8 of the placement rate).
        let delivery = PoolSettings {
            max_size: DELIVERY_POOL_SIZE,
            ..settings
        };
        // Labelled `<schema>.events` in `emporium_db_pool_*`.
        let log_pools: Vec<(&Schema, &'static str, Pool)> = [
            (&users::SCHEMA, "users.events"),
            (&products::SCHEMA, "products.events"),
            (&payments::SCHEMA, "payments.events"),
            (&orders::SCHEMA, "orders.events"),
        ]
        .into_iter()
        .map(|(schema, label)| {
            Ok((
                schema,
                label,
                db::pool(&config.database_url, schema, delivery)?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
        // Each publisher's leader holds a session lock on a connection of its own.
        let leader = PoolSettings {
            max_size: 1,
            ..settings
        };
        let published_logs = match config.nats_url {
            Some(_) => log_pools
                .iter()
                .map(|(schema, _, pool)| {
                    Ok(PublishedLog {
                        schema: schema.name,
                        pool: pool.clone(),
                        leader: db::pool(&config.database_url, schema, leader)?,
                    })
                })
                .collect::<anyhow::Result<_>>()?,
            None => Vec::new(),
        };
        let source = |schema: &Schema| -> Arc<dyn EventSource> {
            let (_, _, pool) = log_pools
                .iter()
                .find(|(log, ..)| log.name == schema.name)
                .expect("every module with a log has a delivery pool");
            Arc::new(PgEventSource {
                schema: schema.name,
                pool: pool.clone(),
            })
        };
        let orders = Arc::new(orders::OrderWriteSide::new(
            orders_pool.clone(),
            deps,
            orders::Sources {
                orders: source(&orders::SCHEMA),
                payments: source(&payments::SCHEMA),
            },
            order_settings,
        ));
        let orders_read = Arc::new(
            orders_read::OrderReadSide::new(
                read_pool.clone(),
                orders_read::Sources {
                    orders: source(&orders::SCHEMA),
                    users: source(&users::SCHEMA),
                    products: source(&products::SCHEMA),
                },
            )
            .listen(config.read_database_url(), config.max_read_waiters),
        );
        Ok(Modules {
            users,
            auth,
            products,
            payments,
            order_commands: orders.commands(),
            order_queries: orders_read.queries(),
            order_owners: orders.owners(),
            orders,
            orders_read,
            payment_service,
            reconcile_every: hooks.reconcile_every,
            pools: vec![
                (users::SCHEMA.name, users_pool),
                (products::SCHEMA.name, products_pool),
                (payments::SCHEMA.name, payments_pool),
                (orders::SCHEMA.name, orders_pool),
                (orders_read::SCHEMA.name, read_pool),
                (payments::GATEWAY_SCHEMA.name, gateway_pool),
            ]
            .into_iter()
            .chain(
                log_pools
                    .iter()
                    .map(|(_, label, pool)| (*label, pool.clone())),
            )
            .collect(),
            health,
            published_logs,
            admin_token: config.admin_token.clone().filter(|t| !t.is_empty()),
        })
    }

    /// Mounts every module's routes and the health endpoints.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::from(self.users.clone()))
            .app_data(web::Data::from(self.products.clone()))
            .app_data(web::Data::from(self.payments.clone()))
            .app_data(web::Data::from(self.order_commands.clone()))
            .app_data(web::Data::from(self.order_queries.clone()))
            .app_data(web::Data::from(self.order_owners.clone()))
            .app_data(web::Data::from(self.auth.clone()))
            .app_data(web::Data::new(kernel::auth::Authenticator {
                verifier: Some(self.auth.tokens().clone()),
                admin_token: self.admin_token.clone(),
            }))
            .app_data(web::Data::new(self.clone()));
        for (mount, routes) in endpoints() {
            match mount {
                Mount::Open => routes.mount(cfg),
                Mount::Admin => {
                    cfg.service(routes.scope("/admin").wrap(from_fn(ops::authorize)));
                }
            }
        }
    }

    /// Every event subscription: the order read model's projection, then the order saga.
    pub fn subscriptions(&self) -> Vec<eventlog::Subscription> {
        let mut subscriptions = self.orders_read.subscriptions();
        subscriptions.extend(self.orders.subscriptions());
        subscriptions
    }

    /// The module logs published to NATS JetStream: every one with `NATS_URL`, else none.
    pub fn published_logs(&self) -> Vec<PublishedLog> {
        self.published_logs.clone()
    }

    /// Usage of each module's pool.
    pub fn pool_status(&self) -> Vec<(&'static str, deadpool::Status)> {
        self.pools
            .iter()
            .map(|(name, pool)| (*name, pool.status()))
            .collect()
    }
}
