//! The emporium process: configuration, pools, module construction, route mounting,
//! health, logging and shutdown. It only wires; no business rule lives here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{HttpResponse, HttpServer, web};
use anyhow::Context;
use kernel::Problem;
use kernel::db::{self, Pool, PoolSettings, Schema};
use product_api::ProductApi;
use user_api::UserApi;

/// Every flag has an environment variable (see `emporium --help`).
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// Write database; created if missing.
    #[arg(long, env = "DATABASE_URL", default_value = db::DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,
    /// Where projections keep the order read model (default: DATABASE_URL).
    #[arg(long, env = "READ_DATABASE_URL", global = true)]
    pub read_database_url: Option<String>,
    /// Listen address.
    #[arg(
        long,
        env = "HTTP_ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub http_addr: String,
    /// Enables /admin; compared in constant time, never logged.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<String>,
    /// How long a pending order holds its stock (e.g. 30m, 90s, 2h).
    #[arg(long, env = "ORDER_EXPIRY", default_value = "30m", value_parser = kernel::parse_duration, global = true)]
    pub order_expiry: Duration,
    /// Connections per module pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 8, global = true)]
    pub db_pool_size: usize,
    /// HTTP worker threads (default: one per CPU core).
    #[arg(long, env = "HTTP_WORKERS", global = true)]
    pub http_workers: Option<usize>,
}

impl Config {
    /// The defaults, with another database url (for tests and tools).
    pub fn for_database(database_url: &str) -> Config {
        Config {
            database_url: database_url.to_owned(),
            read_database_url: None,
            http_addr: "127.0.0.1:0".to_owned(),
            admin_token: None,
            order_expiry: Duration::from_secs(30 * 60),
            db_pool_size: 8,
            http_workers: Some(2),
        }
    }
}

/// Every module's schema, in migration order.
pub const SCHEMAS: [Schema; 2] = [user::SCHEMA, product::SCHEMA];

/// Creates the database if needed and applies pending migrations of every module (or of
/// the one named). Needs a multi-threaded tokio runtime.
pub async fn migrate(config: &Config, only: Option<&str>) -> anyhow::Result<()> {
    if let Some(name) = only {
        anyhow::ensure!(
            SCHEMAS.iter().any(|s| s.name == name),
            "unknown module {name:?}; modules: {}",
            SCHEMAS
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    db::ensure_database(&config.database_url).await?;
    for schema in SCHEMAS
        .iter()
        .filter(|s| only.is_none_or(|name| s.name == name))
    {
        db::migrate(&config.database_url, schema).await?;
    }
    Ok(())
}

/// The constructed modules and their pools.
#[derive(Clone)]
pub struct Modules {
    pub users: Arc<dyn UserApi>,
    pub products: Arc<dyn ProductApi>,
    pools: Vec<(&'static str, Pool)>,
}

impl Modules {
    pub fn new(config: &Config) -> anyhow::Result<Modules> {
        let settings = PoolSettings {
            max_size: config.db_pool_size,
            ..PoolSettings::default()
        };
        let users_pool = db::pool(&config.database_url, &user::SCHEMA, settings)?;
        let products_pool = db::pool(&config.database_url, &product::SCHEMA, settings)?;
        Ok(Modules {
            users: Arc::new(user::UserService::new(users_pool.clone())),
            products: Arc::new(product::ProductService::new(products_pool.clone())),
            pools: vec![
                (user::SCHEMA.name, users_pool),
                (product::SCHEMA.name, products_pool),
            ],
        })
    }

    /// Mounts every module's routes and the health endpoints.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::from(self.users.clone()))
            .app_data(web::Data::from(self.products.clone()))
            .app_data(web::Data::new(self.clone()))
            .configure(user::routes)
            .configure(product::routes)
            .route("/health/live", web::get().to(live))
            .route("/health/ready", web::get().to(ready));
    }
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "live"}))
}

async fn ready(modules: web::Data<Modules>) -> Result<HttpResponse, Problem> {
    for (name, pool) in &modules.pools {
        if let Err(error) = db::ping(pool, Duration::from_secs(2)).await {
            tracing::warn!(module = name, error = format!("{error:#}"), "not ready");
            return Err(Problem::unavailable());
        }
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
}

/// A server that is listening.
pub struct Running {
    pub address: SocketAddr,
    pub handle: ServerHandle,
    server: actix_web::dev::Server,
}

impl Running {
    /// Serves until the handle stops the server.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.server.await.context("http server")
    }
}

/// Migrates, builds the modules and starts listening on `config.http_addr`.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    migrate(config, None).await?;
    let modules = Modules::new(config)?;
    let mut server = HttpServer::new(move || {
        let modules = modules.clone();
        kernel::http::app(move |cfg| modules.configure(cfg))
    })
    .disable_signals()
    .shutdown_timeout(30);
    if let Some(workers) = config.http_workers {
        server = server.workers(workers);
    }
    let server = server
        .bind(&config.http_addr)
        .with_context(|| format!("binding {}", config.http_addr))?;
    let address = *server.addrs().first().context("no listen address")?;
    let server = server.run();
    Ok(Running {
        address,
        handle: server.handle(),
        server,
    })
}
