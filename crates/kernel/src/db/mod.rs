//! Postgres plumbing shared by every module.
//!
//! Data ownership is enforced by Postgres itself: each module owns one schema (or a few)
//! through its own role `emporium_<schema>`, its migrations run as that role and keep their
//! history in that schema (`<schema>.__diesel_schema_migrations`), and its pool's
//! connections `SET ROLE` to it. A module that names another module's table gets
//! `permission denied for schema ...`.
//!
//! Its SQL is raw, and that is the rule's exception: databases, roles, schemas, `SET ROLE`
//! and the catalog (`pg_database`) are DDL and administration, which diesel's DSL does not
//! express.
//!
//! Migrations use `AsyncMigrationHarness`, which blocks in place: call [`migrate`] from a
//! multi-threaded tokio runtime.

use std::time::Duration;

use anyhow::{Context, anyhow};
use deadpool::Runtime;
use deadpool::managed::{Metrics, RecycleError, RecycleResult};
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel_async::pooled_connection::deadpool::PoolError;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolableConnection,
};
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use futures_util::FutureExt;

use crate::Unavailable;

mod errors;
mod prepared;
pub mod text;

pub use crate::unit::Unit;
pub(crate) use errors::is_unavailable_cause;
pub use errors::{DbContext, db_error, is_unavailable, unique_violation};
pub use prepared::{Prepared, prepared};

pub use diesel_async::AsyncPgConnection as PgConnection;

/// A pool of connections that act as one module's role.
pub type Pool = deadpool::managed::Pool<Manager>;
/// A connection checked out of a [`Pool`].
pub type Connection = deadpool::managed::Object<Manager>;

/// A connection used this recently is handed out again without the `SELECT 1` check (a
/// connection whose socket closed is still caught): under load that check was one round
/// trip in four of a simple query. HikariCP's `aliveBypassWindowMs` is the same idea and
/// the same window.
const ALIVE_BYPASS: Duration = Duration::from_millis(500);

/// diesel-async's connection manager, checking a connection on checkout only when it has
/// been idle for [`ALIVE_BYPASS`] or more.
pub struct Manager(AsyncDieselConnectionManager<AsyncPgConnection>);

impl deadpool::managed::Manager for Manager {
    type Type = AsyncPgConnection;
    type Error = diesel_async::pooled_connection::PoolError;

    async fn create(&self) -> Result<AsyncPgConnection, Self::Error> {
        self.0.create().await
    }

    async fn recycle(
        &self,
        conn: &mut AsyncPgConnection,
        metrics: &Metrics,
    ) -> RecycleResult<Self::Error> {
        if metrics.last_used() >= ALIVE_BYPASS {
            return self.0.recycle(conn, metrics).await;
        }
        if conn.is_broken() {
            return Err(RecycleError::message("broken connection"));
        }
        Ok(())
    }
}

/// The default write database.
pub use crate::DEFAULT_DATABASE_URL;

/// A module's slice of the database: the schema it owns and the migrations that build it.
#[derive(Clone, Copy)]
pub struct Schema {
    /// Schema name, also the suffix of the module's role (`emporium_<name>`).
    pub name: &'static str,
    /// The migration sets that build it, applied in order into the one history of the
    /// schema: the event log's tables (`eventlog::MIGRATIONS`) when the schema keeps a log,
    /// then the module's own (`migrations/<schema>/`), embedded in its crate.
    pub migrations: &'static [&'static EmbeddedMigrations],
}

impl Schema {
    pub fn role(&self) -> String {
        format!("emporium_{}", self.name)
    }
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Pool sizing and bounded waits.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    pub max_size: usize,
    /// How long a request waits for a free connection before it is answered `503`.
    pub wait_timeout: Duration,
    /// How long opening a new connection may take.
    pub connect_timeout: Duration,
    /// Postgres's `statement_timeout` on every connection: a statement that runs longer is
    /// cancelled (and the request answered `503`).
    pub statement_timeout: Duration,
    /// Postgres's `idle_in_transaction_session_timeout`: a connection left idle inside a
    /// transaction this long is ended by the server, its locks released.
    pub idle_in_transaction_timeout: Duration,
    /// Every statement on generic plans (`plan_cache_mode = force_generic_plan`), for a
    /// pool whose statements are all look-ups and writes by key, some taking their keys as
    /// an array: Postgres would plan those again at every execution (ARCHITECTURE.md
    /// "Generic plans"). Off by default: a query whose best plan depends on its values
    /// (a filter on a skewed column) wants the values' plan.
    pub generic_plans: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_size: 8,
            wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(15),
            idle_in_transaction_timeout: Duration::from_secs(30),
            generic_plans: false,
        }
    }
}

/// The same server and credentials as `url`, another database.
pub fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let mut parsed = url::Url::parse(url).with_context(|| "invalid database url")?;
    parsed.set_path(&format!("/{database}"));
    Ok(parsed.to_string())
}

/// The database name in `url`.
pub fn database_name(url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url).context("invalid database url")?;
    let name = parsed.path().trim_start_matches('/');
    anyhow::ensure!(!name.is_empty(), "database url names no database");
    Ok(name.to_owned())
}

/// A url with the password hidden, fit for logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<invalid url>".to_owned(),
    }
}

/// Opens one plain connection (as the url's user), for administration.
pub async fn connect_admin(url: &str) -> anyhow::Result<AsyncPgConnection> {
    AsyncPgConnection::establish(url)
        .await
        .map_err(|e| anyhow!(Unavailable(e.to_string())))
        .with_context(|| format!("connecting to {}", redact(url)))
}

/// Creates the database named in `url` if it does not exist yet.
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let name = database_name(url)?;
    let mut admin = connect_admin(&with_database(url, "postgres")?).await?;
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    let found: Exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<diesel::sql_types::Text, _>(&name)
            .get_result(&mut admin)
            .await
            .context("looking up the database")?;
    if found.exists {
        return Ok(());
    }
    match diesel::sql_query(format!("CREATE DATABASE {}", quote_ident(&name)))
        .execute(&mut admin)
        .await
    {
        Ok(_) => {
            tracing::info!(database = %name, "created database");
            Ok(())
        }
        // Another process created it between our look-up and our CREATE.
        Err(e) if unique_violation(&e).is_some() || e.to_string().contains("already exists") => {
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("creating database {name}")),
    }
}

/// Creates the module's role and schema if missing, then applies its pending migrations as
/// that role. Several processes may call this at once: a per-schema advisory lock makes
/// them take turns. Returns the versions applied.
pub async fn migrate(url: &str, schema: &Schema) -> anyhow::Result<Vec<String>> {
    let mut conn = connect_admin(url).await?;
    let role = schema.role();
    let setup = [
        format!(
            "SELECT pg_advisory_lock(hashtext('emporium.migrate.{}'))",
            schema.name
        ),
        // Roles are cluster-wide while the advisory lock is per database: creating the role
        // and joining it tolerate a concurrent twin in another database.
        format!(
            "DO $$ BEGIN \
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN \
             CREATE ROLE {role} NOLOGIN; END IF; \
             IF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN \
             GRANT {role} TO CURRENT_USER; END IF; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        ),
        format!(
            "CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {role}",
            schema.name
        ),
        format!("SET ROLE {role}"),
        format!("SET search_path TO {}", schema.name),
    ];
    for statement in &setup {
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .with_context(|| format!("preparing schema {}: {statement}", schema.name))?;
    }
    let mut harness = AsyncMigrationHarness::new(conn);
    let mut applied = Vec::new();
    for migrations in schema.migrations {
        let versions = harness
            .run_pending_migrations(ModuleMigrations(migrations))
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("running migrations of schema {}", schema.name))?;
        applied.extend(versions.iter().map(ToString::to_string));
    }
    if !applied.is_empty() {
        tracing::info!(schema = schema.name, ?applied, "applied migrations");
    }
    // Dropping the connection releases the advisory lock.
    drop(harness);
    Ok(applied)
}

struct ModuleMigrations(&'static EmbeddedMigrations);

impl MigrationSource<Pg> for ModuleMigrations {
    fn migrations(
        &self,
    ) -> diesel::migration::Result<Vec<Box<dyn diesel::migration::Migration<Pg>>>> {
        MigrationSource::<Pg>::migrations(self.0)
    }
}

/// A pool whose connections act as `schema`'s role, see only its schema by default, and
/// run under the settings' statement and idle-in-transaction timeouts.
pub fn pool(url: &str, schema: &Schema, settings: PoolSettings) -> anyhow::Result<Pool> {
    let role = schema.role();
    let search_path = schema.name.to_owned();
    let (statement_ms, idle_ms) = (
        settings.statement_timeout.as_millis().max(1),
        settings.idle_in_transaction_timeout.as_millis().max(1),
    );
    let plans = if settings.generic_plans {
        "; SET plan_cache_mode = force_generic_plan"
    } else {
        ""
    };
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    config.custom_setup = Box::new(move |url| {
        let statement = format!(
            "SET ROLE {role}; SET search_path TO {search_path}; \
             SET statement_timeout = {statement_ms}; \
             SET idle_in_transaction_session_timeout = {idle_ms}{plans}"
        );
        let url = url.to_owned();
        async move {
            let mut conn = AsyncPgConnection::establish(&url).await?;
            diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, &statement)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    deadpool::managed::Pool::builder(Manager(manager))
        .max_size(settings.max_size)
        .wait_timeout(Some(settings.wait_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(settings.connect_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .with_context(|| format!("building the pool of schema {}", schema.name))
}

/// Checks a connection out of `pool`; failure to get one is [`Unavailable`] (a `503`).
pub async fn connect(pool: &Pool) -> anyhow::Result<Connection> {
    pool.get().await.map_err(|e| {
        let reason = match e {
            PoolError::Timeout(_) => "timed out waiting for a database connection".to_owned(),
            PoolError::Backend(e) => format!("cannot connect to the database: {e}"),
            PoolError::Closed => "the connection pool is closed".to_owned(),
            other => other.to_string(),
        };
        anyhow!(Unavailable(reason))
    })
}

/// Takes `conn` out of its pool for good and closes it: what a connection holding session
/// state (a session advisory lock) must end with, instead of going back to the pool.
pub fn detach(conn: Connection) {
    drop(deadpool::managed::Object::take(conn));
}

/// `SELECT 1` through the pool, within `timeout`.
pub async fn ping(pool: &Pool, timeout: Duration) -> anyhow::Result<()> {
    let check = async {
        let mut conn = connect(pool).await?;
        diesel::sql_query("SELECT 1")
            .execute(&mut conn)
            .await
            .context("SELECT 1")?;
        anyhow::Ok(())
    };
    tokio::time::timeout(timeout, check)
        .await
        .map_err(|_| anyhow!(Unavailable("ping timed out".into())))?
}

/// Deletes the rows of `table` (schema-qualified) whose `column` is before `cutoff`, by
/// their key `key`: `batch` rows per statement (each its own short transaction), at most
/// `max_batches` statements; answers how many. What purgers of rows that only grow
/// (spent tokens, old failures, expired keys) share.
pub async fn delete_older(
    conn: &mut AsyncPgConnection,
    (table, key, column): (&str, &str, &str),
    cutoff: chrono::DateTime<chrono::Utc>,
    batch: i64,
    max_batches: usize,
) -> anyhow::Result<usize> {
    use diesel::sql_types::{BigInt, Timestamptz};
    let sql = format!(
        "DELETE FROM {table} WHERE {key} IN \
         (SELECT {key} FROM {table} WHERE {column} < $1 LIMIT $2)"
    );
    let mut total = 0;
    for _ in 0..max_batches {
        let deleted = diesel::sql_query(&sql)
            .bind::<Timestamptz, _>(cutoff)
            .bind::<BigInt, _>(batch)
            .execute(conn)
            .await
            .map_err(|e| db_error(e, "deleting old rows"))?;
        total += deleted;
        if (deleted as i64) < batch {
            break;
        }
    }
    Ok(total)
}

/// What runs once the transaction [`transaction`] opened has committed.
type Hooks = std::cell::RefCell<Vec<Box<dyn FnOnce() + Send>>>;

tokio::task_local! {
    /// The hooks of the outermost [`transaction`] of this task, while it runs.
    static AFTER_COMMIT: Hooks;
}

/// Runs `hook` once the transaction of the caller's [`transaction`] has committed (the
/// outermost one, when they nest), or never if it rolls back; outside any, at once (a
/// statement without a transaction has committed when it returns).
///
/// What it is for: telling other tasks that something is there to read (the event log's
/// wake-ups), which before the commit would be too early, and inside the transaction, as a
/// `NOTIFY`, would hold every other notifying commit of the cluster behind this one's WAL
/// flush (Postgres serializes them under one lock). A hook must be quick and must not fail:
/// it runs on the committing task, after the commit, and nothing waits for it.
pub fn after_commit(hook: impl FnOnce() + Send + 'static) {
    let mut hook = Some(hook);
    let _ = AFTER_COMMIT.try_with(|hooks| {
        if let Some(hook) = hook.take() {
            hooks.borrow_mut().push(Box::new(hook));
        }
    });
    if let Some(hook) = hook {
        hook();
    }
}

/// Runs `work` in one transaction: commits on `Ok`, rolls back on `Err`; then, after a
/// commit, what [`after_commit`] was given inside it.
///
/// Unlike diesel's own `transaction`, the error type needs no `From<diesel::Error>`, so a
/// module's `-api` error enum (which knows nothing of diesel) can cross it; database
/// failures become its `Unexpected(anyhow::Error)` variant.
pub async fn transaction<R, E, F>(conn: &mut AsyncPgConnection, work: F) -> Result<R, E>
where
    F: AsyncFnOnce(&mut AsyncPgConnection) -> Result<R, E>,
    E: From<anyhow::Error>,
{
    if AFTER_COMMIT.try_with(|_| ()).is_ok() {
        // Nested (a savepoint): the outermost transaction runs the hooks once it commits.
        return in_transaction(conn, work).await;
    }
    let (result, hooks) = AFTER_COMMIT
        .scope(Hooks::default(), async {
            let result = in_transaction(conn, work).await;
            (result, AFTER_COMMIT.with(Hooks::take))
        })
        .await;
    if result.is_ok() {
        for hook in hooks {
            hook();
        }
    }
    result
}

async fn in_transaction<R, E, F>(conn: &mut AsyncPgConnection, work: F) -> Result<R, E>
where
    F: AsyncFnOnce(&mut AsyncPgConnection) -> Result<R, E>,
    E: From<anyhow::Error>,
{
    use diesel_async::TransactionManager;
    type Tm = <AsyncPgConnection as AsyncConnection>::TransactionManager;
    Tm::begin_transaction(conn)
        .await
        .map_err(|e| E::from(db_error(e, "beginning a transaction")))?;
    match work(conn).await {
        Ok(value) => {
            Tm::commit_transaction(conn)
                .await
                .map_err(|e| E::from(db_error(e, "committing")))?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = Tm::rollback_transaction(conn).await {
                tracing::warn!(error = %rollback, "rollback failed; the connection will be discarded");
            }
            Err(error)
        }
    }
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_urls() {
        let url = "postgres://app:secret@db.example:5433/shop?sslmode=disable";
        assert_eq!(database_name(url).unwrap(), "shop");
        assert_eq!(
            with_database(url, "postgres").unwrap(),
            "postgres://app:secret@db.example:5433/postgres?sslmode=disable"
        );
        assert!(!redact(url).contains("secret"));
        assert!(database_name("postgres://localhost").is_err());
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
