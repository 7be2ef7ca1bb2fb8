//! `cargo xtask db`: find a Postgres that answers for DATABASE_URL, or start a private
//! cluster (`pgcluster`) from the system's PostgreSQL binaries under `target/pg`.

use std::env;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use pgcluster::Cluster;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/emporium";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A URL at which Postgres answers: DATABASE_URL (or the default) if a server answers
/// there, else that of the private cluster in `<root>/target/pg`, started if needed.
pub(crate) fn ensure(root: &Path) -> Result<String> {
    let url = env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("invalid DATABASE_URL {url}"))?;
    if answers(&config)? {
        return Ok(url);
    }
    eprintln!("xtask: no Postgres answers at DATABASE_URL; using a private one");
    let port = Cluster::new(root.join("target").join("pg"))?.start()?;
    let database = config.get_dbname().unwrap_or("emporium");
    Ok(format!("postgres://postgres@127.0.0.1:{port}/{database}"))
}

/// Whether the server of `config` accepts a connection to its `postgres` database.
fn answers(config: &tokio_postgres::Config) -> Result<bool> {
    let mut config = config.clone();
    config.dbname("postgres").connect_timeout(CONNECT_TIMEOUT);
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
        let dead: tokio_postgres::Config =
            "postgres://postgres@127.0.0.1:1/emporium".parse().unwrap();
        assert!(!answers(&dead).unwrap());
    }
}
