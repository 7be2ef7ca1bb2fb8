//! The emporium process: configuration, migrations, route mounting (the modules are
//! assembled in `modules.rs`), event delivery, background work, health, and shutdown. It only wires; no business rule
//! lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{HttpServer, web};
use anyhow::Context;
use eventlog::{DispatchSettings, Dispatcher, PublishSettings, Publishers};
use kernel::db::{self, PoolSettings, Schema};
use kernel::openapi::Routes;

pub mod asyncapi;
mod health;
mod modules;
pub mod openapi;
mod ops;

pub use modules::{Hooks, Modules};

/// Every flag has an environment variable (see `emporium --help`).
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// Write database; created if missing.
    #[arg(long, env = "DATABASE_URL", default_value = db::DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,
    /// Where projections keep the order read model (default: DATABASE_URL); created if
    /// missing.
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
    /// Break-glass token for /admin and role grants; compared in constant time, never
    /// logged.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<String>,
    /// Lifetime of an access token (e.g. 15m).
    #[arg(long, env = "ACCESS_TOKEN_TTL", default_value = "15m", value_parser = kernel::parse_duration, global = true)]
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token (e.g. 30d).
    #[arg(long, env = "REFRESH_TOKEN_TTL", default_value = "30d", value_parser = kernel::parse_duration, global = true)]
    pub refresh_token_ttl: Duration,
    /// Ed25519 signing key (PKCS#8 PEM); else one generated once and kept in the database.
    #[arg(long, env = "AUTH_SIGNING_KEY_FILE", global = true)]
    pub auth_signing_key_file: Option<PathBuf>,
    /// After 5 failed logins for one email within this window, its logins are refused
    /// (429) until the window has passed.
    #[arg(long, env = "LOGIN_LOCK_WINDOW", default_value = "15m", value_parser = kernel::parse_duration, global = true)]
    pub login_lock_window: Duration,
    /// How often expired refresh tokens and failed logins older than LOGIN_LOCK_WINDOW are
    /// deleted (e.g. 1h, 5s).
    #[arg(long, env = "PURGE_INTERVAL", default_value = "1h", value_parser = kernel::parse_interval, global = true)]
    pub purge_interval: Duration,
    /// How long a pending order holds its stock (e.g. 30m, 90s, 2h).
    #[arg(long, env = "ORDER_EXPIRY", default_value = "30m", value_parser = kernel::parse_duration, global = true)]
    pub order_expiry: Duration,
    /// Connections per module pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 8, global = true)]
    pub db_pool_size: usize,
    /// HTTP worker threads (default: one per CPU core).
    #[arg(long, env = "HTTP_WORKERS", global = true)]
    pub http_workers: Option<usize>,
    /// Deadline of each payment gateway call (the simulated gateway's slow tokens answer
    /// after twice this).
    #[arg(long, env = "PAYMENT_GATEWAY_TIMEOUT", default_value = "10s", value_parser = kernel::parse_duration, global = true)]
    pub payment_gateway_timeout: Duration,
    /// Deadline of every request: past it the request is abandoned and answered `503
    /// request_timeout` (keep it above PAYMENT_GATEWAY_TIMEOUT, which a confirm may wait).
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = kernel::parse_duration, global = true)]
    pub request_timeout: Duration,
    /// How long an Idempotency-Key of a placement is remembered, then forgotten.
    #[arg(long, env = "IDEMPOTENCY_TTL", default_value = "24h", value_parser = kernel::parse_duration, global = true)]
    pub idempotency_ttl: Duration,
    /// How many pending orders one customer may hold at once (one more is `409
    /// too_many_pending_orders`).
    #[arg(long, env = "MAX_PENDING_ORDERS", default_value_t = 20, global = true)]
    pub max_pending_orders: u32,
    /// How many `min_version` reads one process lets wait at once; one more is answered
    /// at once with what the read model holds.
    #[arg(long, env = "MAX_READ_WAITERS", default_value_t = orders_read::MAX_WAITERS, global = true)]
    pub max_read_waiters: usize,
    /// Origins whose web pages may call the API from a browser (CORS), comma-separated,
    /// each scheme://host[:port], or * for any; unset: CORS is off.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = kernel::parse_origin, global = true)]
    pub cors_allowed_origins: Vec<String>,
    /// How long a browser or a CDN may reuse a catalog read (GET /products...) without
    /// asking again (e.g. 30s); 0 (the default): it revalidates each time (ETag, 304).
    #[arg(long, env = "CATALOG_MAX_AGE", default_value = "0s", value_parser = kernel::parse_duration, global = true)]
    pub catalog_max_age: Duration,
    /// NATS server whose JetStream receives every module's events (stream EMPORIUM,
    /// subjects emporium.<module>.<event_type>); unset: events stay in the database.
    #[arg(long, env = "NATS_URL", global = true)]
    pub nats_url: Option<String>,
}

impl Config {
    /// The defaults, with another database url, small pools and two workers: for tests and
    /// tools that run several processes against one Postgres.
    pub fn for_database(database_url: &str) -> Config {
        Config {
            database_url: database_url.to_owned(),
            read_database_url: None,
            http_addr: "127.0.0.1:0".to_owned(),
            admin_token: None,
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 86_400),
            auth_signing_key_file: None,
            login_lock_window: Duration::from_secs(15 * 60),
            purge_interval: Duration::from_secs(3600),
            order_expiry: Duration::from_secs(30 * 60),
            db_pool_size: 3,
            http_workers: Some(2),
            payment_gateway_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            max_pending_orders: 20,
            max_read_waiters: orders_read::MAX_WAITERS,
            cors_allowed_origins: Vec::new(),
            catalog_max_age: Duration::ZERO,
            nats_url: None,
        }
    }

    pub fn read_database_url(&self) -> &str {
        self.read_database_url
            .as_deref()
            .unwrap_or(&self.database_url)
    }

    fn token_settings(&self) -> users::TokenSettings {
        users::TokenSettings {
            access_ttl: self.access_token_ttl,
            refresh_ttl: self.refresh_token_ttl,
            key_file: self.auth_signing_key_file.clone(),
        }
    }
}

/// `emporium users grant EMAIL ROLE...`: adds staff roles to a user, on the database
/// directly (the first admin needs no running server).
pub async fn grant(config: &Config, email: &str, roles: &[kernel::Role]) -> anyhow::Result<()> {
    migrate(config, Some(users::SCHEMA.name)).await?;
    let pool = db::pool(
        &config.database_url,
        &users::SCHEMA,
        PoolSettings::default(),
    )?;
    let user = users::UserService::new(pool)
        .grant(email, roles)
        .await
        .map_err(|e| match e {
            users_api::UserError::Invalid(fields) => {
                let why: Vec<_> = fields
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect();
                anyhow::anyhow!("{}", why.join("; "))
            }
            other => anyhow::Error::new(other),
        })?;
    let roles: Vec<_> = user.roles.iter().map(kernel::Role::as_str).collect();
    tracing::info!(user_id = %user.id, roles = roles.join(","), "roles granted");
    Ok(())
}

/// `emporium keys rotate`: adds a signing key; tokens signed by the old one stay valid
/// until they expire.
pub async fn rotate_key(config: &Config) -> anyhow::Result<String> {
    anyhow::ensure!(
        config.auth_signing_key_file.is_none(),
        "AUTH_SIGNING_KEY_FILE is set: rotate by replacing that file"
    );
    migrate(config, Some(users::SCHEMA.name)).await?;
    let pool = db::pool(
        &config.database_url,
        &users::SCHEMA,
        PoolSettings::default(),
    )?;
    users::rotate_key(&pool).await
}

/// The schemas of the write database, in migration order.
pub const SCHEMAS: [Schema; 4] = [
    users::SCHEMA,
    products::SCHEMA,
    payments::SCHEMA,
    orders::SCHEMA,
];
/// The schemas of the read database.
pub const READ_SCHEMAS: [Schema; 1] = [orders_read::SCHEMA];
/// The schemas of the external systems the app simulates, in the write database: the
/// simulated payment gateway's ledger. No module's, and without an event log.
pub const SIMULATED_SCHEMAS: [Schema; 1] = [payments::GATEWAY_SCHEMA];

/// Creates the databases if needed and applies pending migrations of every schema (or of
/// the one named). Needs a multi-threaded tokio runtime.
pub async fn migrate(config: &Config, only: Option<&str>) -> anyhow::Result<()> {
    let all = || {
        SCHEMAS
            .iter()
            .chain(READ_SCHEMAS.iter())
            .chain(SIMULATED_SCHEMAS.iter())
    };
    if let Some(name) = only {
        anyhow::ensure!(
            all().any(|s| s.name == name),
            "unknown schema {name:?}; schemas: {}",
            all().map(|s| s.name).collect::<Vec<_>>().join(", ")
        );
    }
    let wanted = |s: &&Schema| only.is_none_or(|name| s.name == name);
    db::ensure_database(&config.database_url).await?;
    for schema in SCHEMAS
        .iter()
        .chain(SIMULATED_SCHEMAS.iter())
        .filter(wanted)
    {
        db::migrate(&config.database_url, schema).await?;
    }
    db::ensure_database(config.read_database_url()).await?;
    for schema in READ_SCHEMAS.iter().filter(wanted) {
        db::migrate(config.read_database_url(), schema).await?;
    }
    Ok(())
}

/// Where a part of the routes is mounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mount {
    /// As they are.
    Open,
    /// In `web::scope("/admin")`, behind `ADMIN_TOKEN`.
    Admin,
}

/// Every route the app serves, part by part: each module's, health, metrics, admin, and
/// the document's own. [`Modules::configure`] mounts exactly these and
/// [`openapi::document`] documents exactly these, each registered from its handler's
/// `#[utoipa::path]`.
pub fn endpoints() -> Vec<(Mount, Routes)> {
    vec![
        (Mount::Open, users::endpoints()),
        (Mount::Open, products::endpoints()),
        (Mount::Open, orders::endpoints()),
        (Mount::Open, orders_read::endpoints()),
        (Mount::Open, payments::endpoints()),
        (Mount::Open, health::endpoints()),
        (Mount::Open, ops::endpoints()),
        (Mount::Admin, ops::admin()),
        (Mount::Open, openapi::endpoints()),
        (Mount::Open, asyncapi::endpoints()),
    ]
}

/// Event delivery, the sweeper, the payment reconciler and the read model's cleaner;
/// stopped when dropped.
pub struct Background {
    _dispatcher: Dispatcher,
    /// With `NATS_URL`: each log's publisher to JetStream.
    _publishers: Option<Publishers>,
    sweeper: tokio::task::JoinHandle<()>,
    reconciler: tokio::task::JoinHandle<()>,
    cleaner: tokio::task::JoinHandle<()>,
    purger: tokio::task::JoinHandle<()>,
}

impl Drop for Background {
    fn drop(&mut self) {
        self.sweeper.abort();
        self.reconciler.abort();
        self.cleaner.abort();
        self.purger.abort();
    }
}

/// How long a client may take to send a request's head.
pub const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts delivering events to every subscriber, the sweeper, the payment reconciler, the
/// read model's cleaner (which finishes deleting generations a rebuild retired) and the
/// users module's purger (expired refresh tokens, stale failed logins; every
/// `PURGE_INTERVAL`), and with `NATS_URL` each module log's publisher.
pub async fn start_background(config: &Config, modules: &Modules) -> anyhow::Result<Background> {
    let subscriptions = modules.subscriptions();
    let dispatcher = Dispatcher::start(
        &config.database_url,
        subscriptions,
        DispatchSettings::default(),
    )
    .await?;
    let publishers = match &config.nats_url {
        Some(url) => Some(
            Publishers::start(
                modules.published_logs(),
                PublishSettings::new(url.clone()),
                dispatcher.wake(),
            )
            .await?,
        ),
        None => None,
    };
    Ok(Background {
        _dispatcher: dispatcher,
        _publishers: publishers,
        sweeper: modules.orders.spawn_sweeper(),
        reconciler: modules.payment_service.clone().spawn_reconciler(
            payments::ReconcilerSettings {
                every: modules.reconcile_every,
                ..payments::ReconcilerSettings::default()
            },
        ),
        cleaner: modules.orders_read.spawn_cleaner(),
        purger: modules.auth.clone().spawn_purger(config.purge_interval),
    })
}

/// A server that is listening.
pub struct Running {
    pub address: SocketAddr,
    pub handle: ServerHandle,
    pub modules: Modules,
    server: actix_web::dev::Server,
    background: Option<Background>,
}

impl Running {
    /// Serves until the handle stops the server, then stops the background work.
    pub async fn wait(self) -> anyhow::Result<()> {
        let result = self.server.await.context("http server");
        drop(self.background);
        result
    }
}

/// Migrates, builds the modules, starts background work and listens on
/// `config.http_addr`.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    start_with(config, Hooks::default()).await
}

/// [`start`], with test hooks.
pub async fn start_with(config: &Config, hooks: Hooks) -> anyhow::Result<Running> {
    migrate(config, None).await?;
    let modules = Modules::new(config, &hooks).await?;
    let background = if hooks.background {
        Some(start_background(config, &modules).await?)
    } else {
        None
    };
    let app_modules = modules.clone();
    let deadline = kernel::http::RequestTimeout(config.request_timeout);
    let catalog_max_age = kernel::http::PublicMaxAge(config.catalog_max_age);
    let settings = kernel::http::HttpSettings {
        cors_allowed_origins: config.cors_allowed_origins.clone(),
    };
    let mut server = HttpServer::new(move || {
        let modules = app_modules.clone();
        kernel::http::app(settings.clone(), move |cfg| {
            cfg.app_data(web::Data::new(deadline))
                .app_data(web::Data::new(catalog_max_age));
            modules.configure(cfg);
        })
    })
    .disable_signals()
    .shutdown_timeout(30)
    // A client gets 5 s to send its request head (a slow-loris connection is answered
    // `408` and closed), an idle keep-alive connection is closed after 5 s, and a closing
    // one is dropped after 1 s.
    .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
    .keep_alive(Duration::from_secs(5))
    .client_disconnect_timeout(Duration::from_secs(1));
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
        modules,
        server,
        background,
    })
}
