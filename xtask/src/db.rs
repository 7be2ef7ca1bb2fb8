//! xtask's one way to a database: [`DbUrl`] (a Postgres URL parsed by the `url` crate,
//! its password never printed), connections, and databases made and dropped for a run;
//! and `cargo xtask db`: find a Postgres that answers for DATABASE_URL, or start a private
//! cluster (`pgcluster`) from the system's PostgreSQL binaries under `target/pg`.

use std::env;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pgcluster::Cluster;
use url::Url;

/// DATABASE_URL when it is not set: the app's (the kernel without features: no diesel).
pub(crate) const DEFAULT_URL: &str = kernel::DEFAULT_DATABASE_URL;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A Postgres URL (`postgres://user[:password]@host[:port]/database[?options]`). `Display`
/// shows it with the password replaced by `***`, so every message can name it;
/// [`DbUrl::as_str`] is the real one, for the processes that connect.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DbUrl(Url);

impl DbUrl {
    pub(crate) fn parse(text: &str) -> Result<DbUrl> {
        // The text is not shown: it failed to parse, so the password cannot be found in it.
        let url = Url::parse(text).map_err(|e| {
            anyhow::anyhow!("invalid database url ({e}; not shown, it may hold a password)")
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            bail!(
                "invalid database url {}: the scheme must be postgres://",
                DbUrl(url)
            );
        }
        Ok(DbUrl(url))
    }

    /// DATABASE_URL, or [`DEFAULT_URL`].
    pub(crate) fn from_env() -> Result<DbUrl> {
        match env::var("DATABASE_URL") {
            Ok(url) => DbUrl::parse(&url).context("reading DATABASE_URL"),
            Err(_) => DbUrl::parse(DEFAULT_URL),
        }
    }

    /// The URL itself, password included: for `DATABASE_URL` of a child process, never
    /// for a message.
    pub(crate) fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The database it names, if any.
    pub(crate) fn database(&self) -> Option<&str> {
        Some(self.0.path().trim_start_matches('/')).filter(|d| !d.is_empty())
    }

    /// The same server and options, database `name`.
    pub(crate) fn with_database(&self, name: &str) -> DbUrl {
        let mut url = self.0.clone();
        url.set_path(&format!("/{name}"));
        DbUrl(url)
    }

    /// The same user, database and options, at `127.0.0.1:port`.
    pub(crate) fn at_local_port(&self, port: u16) -> DbUrl {
        let mut url = self.0.clone();
        url.set_host(Some("127.0.0.1"))
            .expect("a postgres:// url has a host");
        url.set_port(Some(port))
            .expect("a postgres:// url with a host takes a port");
        DbUrl(url)
    }

    /// What libpq's tools (`pgbench`) take as `-h -p -U`, `PGPASSWORD` and the database,
    /// decoded.
    pub(crate) fn libpq(&self) -> Result<Libpq> {
        let config = self.config()?;
        Ok(Libpq {
            host: match config.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
                Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
                None => "127.0.0.1".to_owned(),
            },
            port: config.get_ports().first().copied().unwrap_or(5432),
            user: config.get_user().unwrap_or("postgres").to_owned(),
            password: config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            database: config.get_dbname().map(str::to_owned),
        })
    }

    fn config(&self) -> Result<tokio_postgres::Config> {
        self.as_str()
            .parse()
            .with_context(|| format!("invalid database url {self}"))
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        f.write_str(shown.as_str())
    }
}

/// A URL's parts for libpq's command-line tools.
pub(crate) struct Libpq {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: Option<String>,
    pub(crate) database: Option<String>,
}

/// A connection to `url`, driven in the background.
pub(crate) async fn connect(url: &DbUrl) -> Result<tokio_postgres::Client> {
    let (client, connection) = url
        .config()?
        .connect(tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Drops and creates database `name` on the server of `url`; its url.
pub(crate) async fn recreate_database(url: &DbUrl, name: &str) -> Result<DbUrl> {
    let admin = connect(&url.with_database("postgres")).await?;
    // One statement each: DROP DATABASE refuses to run in a (multi-statement) transaction.
    for statement in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin
            .batch_execute(&statement)
            .await
            .with_context(|| format!("recreating database {name}: {statement}"))?;
    }
    Ok(url.with_database(name))
}

/// Drops database `name` on the server of `url`.
pub(crate) async fn drop_database(url: &DbUrl, name: &str) -> Result<()> {
    connect(&url.with_database("postgres"))
        .await?
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .with_context(|| format!("dropping database {name}"))
}

/// A URL at which Postgres answers: DATABASE_URL (or the default) if a server answers
/// there, else that of the private cluster in `<root>/target/pg`, started if needed.
pub(crate) fn ensure(root: &Path) -> Result<DbUrl> {
    let url = DbUrl::from_env()?;
    if answers(&url)? {
        return Ok(url);
    }
    eprintln!("xtask: no Postgres answers at {url}; using a private one");
    let port = Cluster::new(root.join("target").join("pg"))?.start()?;
    Ok(cluster_url(port, url.database().unwrap_or("emporium")))
}

/// Database `name` of a private cluster (`pgcluster`: user `postgres`, trust) on `port`.
pub(crate) fn cluster_url(port: u16, name: &str) -> DbUrl {
    DbUrl::parse(DEFAULT_URL)
        .expect("the default url parses")
        .at_local_port(port)
        .with_database(name)
}

/// Whether the server of `url` accepts a connection to its `postgres` database.
fn answers(url: &DbUrl) -> Result<bool> {
    let mut config = url.with_database("postgres").config()?;
    config.connect_timeout(CONNECT_TIMEOUT);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;
    let connected = runtime.block_on(async {
        tokio::time::timeout(CONNECT_TIMEOUT, config.connect(tokio_postgres::NoTls)).await
    });
    Ok(matches!(connected, Ok(Ok(_))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ensure` falls back to a private cluster when nothing answers at DATABASE_URL.
    #[test]
    fn answers_tells_a_live_server_from_none() {
        let dead = DbUrl::parse("postgres://postgres@127.0.0.1:1/emporium").unwrap();
        assert!(!answers(&dead).unwrap());
    }

    #[test]
    fn swaps_the_database() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/emporium",
                "postgres://postgres@127.0.0.1:5432/x",
            ),
            (
                "postgres://u:p@h/db?sslmode=disable",
                "postgres://u:p@h/x?sslmode=disable",
            ),
            ("postgres://h:1", "postgres://h:1/x"),
        ];
        for (url, expected) in cases {
            assert_eq!(
                DbUrl::parse(url).unwrap().with_database("x").as_str(),
                expected
            );
        }
        let url = DbUrl::parse(DEFAULT_URL).unwrap();
        assert_eq!(url.database(), Some("emporium"));
        assert_eq!(
            url.at_local_port(6543).as_str(),
            "postgres://postgres@127.0.0.1:6543/emporium"
        );
    }

    /// The password shows in no message: not in the URL's `Display`, not in a failed
    /// connection's error chain, not in a parse error.
    #[tokio::test]
    async fn the_password_is_never_printed() {
        let url = DbUrl::parse("postgres://ada:s3cret@127.0.0.1:1/shop?sslmode=disable").unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://ada:***@127.0.0.1:1/shop?sslmode=disable"
        );
        assert!(url.as_str().contains("s3cret"));
        let error = connect(&url).await.expect_err("nothing listens on port 1");
        let message = format!("{error:#} {error:?}");
        assert!(message.contains("127.0.0.1:1"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        let error = DbUrl::parse("postgres://ada:s3cret@[::1/shop").unwrap_err();
        assert!(!format!("{error:#}").contains("s3cret"), "{error:#}");
        let error = DbUrl::parse("mysql://ada:s3cret@h/shop").unwrap_err();
        assert!(!format!("{error:#}").contains("s3cret"), "{error:#}");
    }

    #[test]
    fn libpq_parts() {
        let parts = DbUrl::parse("postgres://ada:p%40ss@db.local:6000/shop")
            .unwrap()
            .libpq()
            .unwrap();
        assert_eq!(
            (parts.host.as_str(), parts.port, parts.user.as_str()),
            ("db.local", 6000, "ada")
        );
        assert_eq!(parts.password.as_deref(), Some("p@ss"));
        assert_eq!(parts.database.as_deref(), Some("shop"));
        let parts = DbUrl::parse("postgres://127.0.0.1/shop")
            .unwrap()
            .libpq()
            .unwrap();
        assert_eq!((parts.port, parts.user.as_str()), (5432, "postgres"));
        assert_eq!(parts.password, None);
    }
}
