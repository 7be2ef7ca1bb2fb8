//! Test support: a fresh database per test, cloned from a migrated template, and the HTTP
//! app served on port 0 (zero2prod's `spawn_app`).
//!
//! The template is built once per set of schemas and migration contents (its name carries
//! a hash of `migrations/`), under an advisory lock so concurrent test processes share it.
//! Each test database is named `emporium_test_<pid>_<n>`; databases left by processes that
//! are gone are dropped the next time a test process starts.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use actix_web::{HttpServer, web};
use anyhow::Context;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::{self, Schema};

mod identity;
mod plan;

pub use identity::{TEST_ADMIN_TOKEN, TestTokens, token};
pub use plan::Plan;

/// A database of its own for one test, with every given schema migrated.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub url: String,
    pub name: String,
}

/// The server (maintenance) url tests start from: `DATABASE_URL`, or the default.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| db::DEFAULT_DATABASE_URL.to_owned())
}

/// A fresh database holding `schemas`, migrated. Panics (failing the test) when Postgres
/// cannot be reached, with the url it tried.
pub async fn database(schemas: &[Schema]) -> TestDatabase {
    init_logs();
    let base = server_url();
    let template = template(&base, schemas);
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "emporium_test_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let admin_url = db::with_database(&base, "postgres").expect("valid DATABASE_URL");
    let mut admin = db::connect_admin(&admin_url)
        .await
        .expect("connect to Postgres for tests");
    let create = format!(
        "CREATE DATABASE {} TEMPLATE {}",
        db::quote_ident(&name),
        db::quote_ident(&template)
    );
    // Two clones of one template at the same instant can collide ("being accessed by other
    // users"); retry for a while.
    let mut attempt = 0;
    loop {
        match diesel::sql_query(&create).execute(&mut admin).await {
            Ok(_) => break,
            Err(e) if attempt < 100 && e.to_string().contains("accessed by other users") => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("creating test database {name}: {e}"),
        }
    }
    TestDatabase {
        url: db::with_database(&base, &name).expect("valid url"),
        name,
    }
}

/// Returns the name of the migrated template for `schemas`, building it when missing.
fn template(base: &str, schemas: &[Schema]) -> String {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let name = template_name(schemas);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.contains(&name) {
        return name;
    }
    // Migrations block in place, so they need a multi-threaded runtime of their own
    // whatever runtime the test uses.
    let (base_owned, schemas_owned, template) = (base.to_owned(), schemas.to_vec(), name.clone());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(build_template(&base_owned, &schemas_owned, &template))
    })
    .join()
    .expect("template thread")
    .unwrap_or_else(|e| {
        panic!(
            "preparing test template {name} on {}: {e:?}",
            db::redact(base)
        )
    });
    built.push(name.clone());
    name
}

async fn build_template(base: &str, schemas: &[Schema], template: &str) -> anyhow::Result<()> {
    let admin_url = db::with_database(base, "postgres")?;
    let mut admin = db::connect_admin(&admin_url).await?;
    diesel::sql_query("SELECT pg_advisory_lock(hashtext('emporium.test-template'))")
        .execute(&mut admin)
        .await?;
    drop_stale_databases(&mut admin).await?;
    if !database_exists(&mut admin, template).await? {
        let building = format!("{template}_building");
        diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            db::quote_ident(&building)
        ))
        .execute(&mut admin)
        .await?;
        diesel::sql_query(format!("CREATE DATABASE {}", db::quote_ident(&building)))
            .execute(&mut admin)
            .await?;
        let url = db::with_database(base, &building)?;
        for schema in schemas {
            db::migrate(&url, schema).await?;
        }
        diesel::sql_query(format!(
            "ALTER DATABASE {} RENAME TO {}",
            db::quote_ident(&building),
            db::quote_ident(template)
        ))
        .execute(&mut admin)
        .await
        .context("renaming the finished template")?;
    }
    diesel::sql_query("SELECT pg_advisory_unlock(hashtext('emporium.test-template'))")
        .execute(&mut admin)
        .await?;
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct Name {
    #[diesel(sql_type = diesel::sql_types::Text)]
    datname: String,
}

async fn database_exists(admin: &mut AsyncPgConnection, name: &str) -> anyhow::Result<bool> {
    let found: Vec<Name> = diesel::sql_query("SELECT datname FROM pg_database WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(name)
        .load(admin)
        .await?;
    Ok(!found.is_empty())
}

/// Drops test databases whose creating process no longer runs.
async fn drop_stale_databases(admin: &mut AsyncPgConnection) -> anyhow::Result<()> {
    let names: Vec<Name> = diesel::sql_query(
        "SELECT datname FROM pg_database WHERE datname LIKE 'emporium\\_test\\_%'",
    )
    .load(admin)
    .await?;
    for Name { datname } in names {
        let pid = datname
            .split('_')
            .nth(2)
            .and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                db::quote_ident(&datname)
            ))
            .execute(admin)
            .await?;
        }
    }
    Ok(())
}

/// `emporium_tpl_<hash>`: changes whenever a schema or any migration file changes.
fn template_name(schemas: &[Schema]) -> String {
    let mut hash = Fnv::default();
    for schema in schemas {
        hash.write(schema.name.as_bytes());
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut files = Vec::new();
    collect_files(&root, &mut files);
    files.sort();
    for file in files {
        hash.write(file.to_string_lossy().as_bytes());
        hash.write(&std::fs::read(&file).unwrap_or_default());
    }
    format!("emporium_tpl_{:016x}", hash.0)
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl TestDatabase {
    /// A plain connection as the url's user (a superuser in tests), to inspect state.
    pub async fn connect(&self) -> AsyncPgConnection {
        db::connect_admin(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Runs a query that returns one `bigint` named `n`, e.g. `SELECT count(*) AS n FROM ...`.
    pub async fn scalar(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let row: N = diesel::sql_query(sql)
            .get_result(&mut self.connect().await)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        row.n
    }
}

/// An HTTP answer, read whole: status, headers and the body as JSON (`Null` when empty,
/// a JSON string when it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
}

impl Answer {
    /// Status, body and headers (but `date` and `x-request-id`) with `id` taken out: what
    /// two answers about different ids share when they are "the same answer" (another
    /// customer's order and an unknown one, say).
    pub fn shape_without(&self, id: &str) -> (u16, String, Vec<String>) {
        let mut headers: Vec<String> = self
            .headers
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id"))
            .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("?")))
            .collect();
        headers.sort();
        (
            self.status,
            self.body.to_string().replace(id, "<id>"),
            headers,
        )
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json answer with this status and code, and returns its body.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) -> &serde_json::Value {
        assert_eq!(self.status, status, "status of {:#}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some(crate::http::PROBLEM_JSON),
            "content type of {:#}",
            self.body
        );
        assert_eq!(self.body["code"], code, "code of {:#}", self.body);
        assert_eq!(
            self.body["status"], status,
            "status field of {:#}",
            self.body
        );
        assert!(
            self.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "detail of {:#}",
            self.body
        );
        &self.body
    }
}

/// A small JSON client bound to one server, anonymous or sending one `Authorization`.
#[derive(Clone)]
pub struct Http {
    pub base: String,
    pub client: reqwest::Client,
    /// The `Authorization` header of every request, if any.
    pub authorization: Option<String>,
}

impl Http {
    pub fn new(base: impl Into<String>) -> Http {
        Http {
            base: base.into(),
            client: reqwest::Client::new(),
            authorization: None,
        }
    }

    /// The same client, sending `Authorization: Bearer <token>`.
    pub fn with_bearer(&self, token: &str) -> Http {
        self.with_authorization(&format!("Bearer {token}"))
    }

    /// The same client, sending this `Authorization` header (malformed ones included).
    pub fn with_authorization(&self, value: &str) -> Http {
        Http {
            authorization: Some(value.to_owned()),
            ..self.clone()
        }
    }

    /// The same client, sending no `Authorization`.
    pub fn anonymous(&self) -> Http {
        Http {
            authorization: None,
            ..self.clone()
        }
    }

    pub async fn put(&self, path: &str, body: serde_json::Value) -> Answer {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> Answer {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: serde_json::Value) -> Answer {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request")).await
    }

    /// A request to `path` with this client's `Authorization`, to add headers to.
    pub fn request(&self, method: &str, path: &str) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.authorization {
            Some(authorization) => request.header("authorization", authorization),
            None => request,
        }
    }

    /// Sends raw bytes with an optional content type, for malformed-input tests.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .body(body);
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        read(request.send().await.expect("request")).await
    }
}

async fn read(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        })
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// A running HTTP server for one test.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    pub http: Http,
    handle: actix_web::dev::ServerHandle,
}

impl TestServer {
    /// Serves the standard app (see [`crate::http::app`]) with `configure`'s routes on a
    /// free port, authenticating with [`TestTokens`] and [`TEST_ADMIN_TOKEN`] unless
    /// `configure` registers an `Authenticator` of its own.
    pub fn start<F>(configure: F) -> TestServer
    where
        F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    {
        init_logs();
        let authenticator = web::Data::new(identity::authenticator());
        let configure = move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(authenticator.clone());
            configure(cfg);
        };
        let server = HttpServer::new(move || {
            crate::http::app(crate::http::HttpSettings::default(), configure.clone())
        })
        .workers(2)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind a free port");
        let address = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        TestServer {
            http: Http::new(address.clone()),
            address,
            handle,
        }
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// Quiet by default; `TEST_LOG=1` prints the app's logs.
pub fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
}
