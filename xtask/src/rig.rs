//! A release build of emporium serving a fresh database of its own: what `bench` and `soak`
//! measure (or a debug build: what `fuzz` checks). It builds the binary, finds a Postgres ([`Postgres`]: the shared one, or a
//! private cluster), makes the run's database (named with the process id, so that two runs
//! against one Postgres, a full one and CI's, do not drop each other's), picks a free port,
//! and starts the server with a run's environment, timing it to ready.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::db::{self, DbUrl};
use crate::load::Api;
use crate::server::{Server, build_debug, build_release, free_address};

/// Which Postgres a run's database lives on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Postgres {
    /// The one `db::ensure` finds (DATABASE_URL's, or `target/pg`).
    Shared,
    /// A cluster of the run's own (`pgcluster`, in `<out>/pg`, removed at the end), so that
    /// no other work on the machine's Postgres reaches it: a `DROP DATABASE` elsewhere
    /// checkpoints the whole cluster at once, the run's dirty pages with it, and stalls its
    /// commits for seconds.
    Private,
}

/// One run's server, database and client.
pub(crate) struct Rig {
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) binary: PathBuf,
    /// The Postgres server the run's databases live on, and the cluster if it is the run's.
    pub(crate) postgres: DbUrl,
    cluster: Option<pgcluster::Cluster>,
    /// The run's own database.
    pub(crate) url: DbUrl,
    pub(crate) address: String,
    pub(crate) api: Api,
    /// Where the run writes its logs and files: `target/<command>/`.
    pub(crate) out: PathBuf,
}

impl Rig {
    /// Builds, and makes the database `emporium_<command>_<pid>` (dropped first if it
    /// exists) on `postgres`; the server is not started yet. `admin_token` is the server's
    /// and the client's `ADMIN_TOKEN`.
    pub(crate) fn new(
        root: &Path,
        command: &str,
        admin_token: &str,
        postgres: Postgres,
    ) -> Result<Rig> {
        Rig::with_binary(root, command, admin_token, postgres, build_release(root)?)
    }

    /// [`Rig::new`] with a debug build: for a run that checks behaviour, not speed (it
    /// shares the build of `cargo test`'s dependencies).
    pub(crate) fn debug(
        root: &Path,
        command: &str,
        admin_token: &str,
        postgres: Postgres,
    ) -> Result<Rig> {
        Rig::with_binary(root, command, admin_token, postgres, build_debug(root)?)
    }

    fn with_binary(
        root: &Path,
        command: &str,
        admin_token: &str,
        postgres: Postgres,
        binary: PathBuf,
    ) -> Result<Rig> {
        let out = root.join("target").join(command);
        fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let (postgres, cluster) = match postgres {
            Postgres::Shared => (db::ensure(root)?, None),
            Postgres::Private => {
                let cluster = pgcluster::Cluster::new(out.join("pg"))?;
                // What a run that was killed left.
                cluster.remove()?;
                let port = cluster.start()?;
                (db::cluster_url(port, "postgres"), Some(cluster))
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting a tokio runtime")?;
        let name = Rig::database_name(&format!("emporium_{command}"));
        let url = runtime.block_on(db::recreate_database(&postgres, &name))?;
        let address = free_address()?;
        Ok(Rig {
            api: Api::new(&address, admin_token)?,
            runtime,
            binary,
            postgres,
            cluster,
            url,
            address,
            out,
        })
    }

    /// `name_<pid>`: a database of this run.
    pub(crate) fn database_name(name: &str) -> String {
        format!("{name}_{}", std::process::id())
    }

    pub(crate) fn block_on<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        self.runtime.block_on(work)
    }

    /// Starts the server with `env` on top of the rig's address and database, logging to
    /// `out/<log>`; it and the time from process start to `/health/ready` = 200.
    pub(crate) fn start(
        &self,
        env: &[(&'static str, String)],
        log: &str,
    ) -> Result<(Server, Duration)> {
        let at = (self.binary.as_path(), self.address.as_str());
        self.launch(at, env, log, Duration::from_secs(60))
    }

    /// Starts `binary serve` (the server, or another binary that takes its arguments) on
    /// `address` against the rig's database with `env`, logging to `out/<log>`; it and the
    /// time from process start to `/health/ready` = 200, at most `timeout`.
    pub(crate) fn launch(
        &self,
        (binary, address): (&Path, &str),
        env: &[(&'static str, String)],
        log: &str,
        timeout: Duration,
    ) -> Result<(Server, Duration)> {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let started = Instant::now();
        let mut server = Server::start(binary, address, &self.url, &env, &self.out.join(log))?;
        server.wait_until_ready(address, timeout)?;
        let ready = started.elapsed();
        eprintln!("xtask: ready in {:.0} ms", ready.as_secs_f64() * 1000.0);
        Ok((server, ready))
    }

    /// Drops the run's database and `others` of a shared Postgres, or removes the private
    /// cluster; a failure is a warning (the figures are taken by then).
    pub(crate) fn clean_up(&self, others: &[&str]) {
        if let Some(cluster) = &self.cluster {
            if let Err(error) = cluster.remove() {
                eprintln!("xtask: warning: removing the private Postgres: {error:#}");
            }
            return;
        }
        let own = self.url.database().map(str::to_owned);
        for name in own.iter().map(String::as_str).chain(others.iter().copied()) {
            if let Err(error) = self.block_on(db::drop_database(&self.postgres, name)) {
                eprintln!("xtask: warning: {error:#}");
            }
        }
    }
}
