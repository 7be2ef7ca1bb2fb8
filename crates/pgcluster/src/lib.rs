//! A private PostgreSQL cluster in a folder of its own, started from the system's
//! binaries: what `cargo xtask db` falls back to when nothing answers at DATABASE_URL, and
//! what tests use when they need a Postgres they may stop and start.
//!
//! The cluster lives in `<base>/data`, logs to `<base>/log`, keeps its sockets in
//! `<base>/sock` and its port in `<base>/port` (a restart reuses it), listens on 127.0.0.1
//! only and trusts every local connection. `initdb` and `postgres` refuse to run as root,
//! so as root the cluster belongs to the `postgres` OS user and its tools run through
//! `runuser`; when that user cannot reach `<base>` (a checkout under `/root`, mode 700, is
//! the usual case in a container), the cluster lives in a folder of the system's temporary
//! directory named after `<base>` instead, so the same `<base>` always finds it again.
//! Knows nothing of emporium.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::{env, fs};

use anyhow::{Context, Result, bail};

/// A private Postgres cluster in a directory of its own.
pub struct Cluster {
    /// Where the caller asked for the cluster.
    base: PathBuf,
    /// Where it lives: `base`, or a folder the `postgres` user can reach (see the docs).
    home: PathBuf,
    /// The folder holding `initdb` and `pg_ctl`.
    bin: PathBuf,
    /// We are root: the cluster belongs to the `postgres` OS user.
    as_postgres: bool,
}

impl Cluster {
    /// `base` must be an absolute path.
    pub fn new(base: PathBuf) -> Result<Cluster> {
        let as_postgres = is_root()?;
        let bin = match find_binaries() {
            Some(bin) => bin,
            None => {
                install_postgres(as_postgres)?;
                find_binaries().context("PostgreSQL is installed but initdb is still missing")?
            }
        };
        let home = if as_postgres {
            reachable_home(&base)?
        } else {
            base.clone()
        };
        Ok(Cluster {
            base,
            home,
            bin,
            as_postgres,
        })
    }

    pub fn data(&self) -> PathBuf {
        self.home.join("data")
    }

    /// Where the cluster lives (`base` unless the `postgres` user cannot reach it).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Starts the cluster (on the port it had before, if any), or finds it already
    /// running; returns its port.
    pub fn start(&self) -> Result<u16> {
        let (data, port_file) = (self.data(), self.home.join("port"));
        let initialized = data.join("PG_VERSION").exists();
        if initialized && self.running() {
            let port = fs::read_to_string(&port_file)
                .with_context(|| format!("reading {}", port_file.display()))?;
            let port = port.trim().parse().context("port file holds no port")?;
            eprintln!(
                "pgcluster: reusing private Postgres in {} on port {port}",
                self.home.display()
            );
            return Ok(port);
        }
        let sockets = self.home.join("sock");
        fs::create_dir_all(&sockets).with_context(|| format!("creating {}", sockets.display()))?;
        if self.as_postgres {
            ensure_postgres_user()?;
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(&self.home))?;
        }
        if !initialized {
            if data.exists() {
                // Leftovers of an initdb that did not finish.
                fs::remove_dir_all(&data)
                    .with_context(|| format!("removing {}", data.display()))?;
            }
            eprintln!("pgcluster: initdb {}", data.display());
            quietly(self.tool("initdb").arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]))?;
        }
        let remembered = fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse().ok());
        let port = match remembered {
            Some(port) => port,
            None => TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
        };
        eprintln!(
            "pgcluster: starting private Postgres in {} on port {port}",
            self.home.display()
        );
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k '{}'",
            sockets.display()
        );
        let log = self.home.join("log");
        quietly(
            self.tool("pg_ctl")
                .arg("-w")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .arg("-o")
                .arg(options)
                .arg("start"),
        )
        .with_context(|| format!("starting Postgres; see {}", log.display()))?;
        fs::write(&port_file, format!("{port}\n"))
            .with_context(|| format!("writing {}", port_file.display()))?;
        Ok(port)
    }

    /// Whether `pg_ctl status` finds the cluster's postmaster running.
    pub fn running(&self) -> bool {
        let status = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("status")
            .output();
        status.is_ok_and(|output| output.status.success())
    }

    /// Crashes the cluster (immediate shutdown: no checkpoint, recovery on the next start),
    /// as a power cut would.
    pub fn crash(&self) -> Result<()> {
        quietly(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["stop", "-m", "immediate"]),
        )
    }

    /// Stops the cluster (fast shutdown: open connections are cut).
    pub fn stop(&self) -> Result<()> {
        quietly(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["stop", "-m", "fast"]),
        )
    }

    /// `bin/<name>`, run as the `postgres` user when we are root.
    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        let mut command = if self.as_postgres {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", "postgres", "--"]).arg(path);
            runuser
        } else {
            Command::new(path)
        };
        command.current_dir(&self.home).stdin(Stdio::null());
        command
    }
}

/// Runs `command` with its output captured; shows the output only if it fails.
fn quietly(command: &mut Command) -> Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {}", describe(command)))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}):\n{}{}",
            describe(command),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The folder with `initdb` and `pg_ctl`: on PATH, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps them off PATH).
fn find_binaries() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let path = env::var_os("PATH").unwrap_or_default();
    if let Some(dir) = env::split_paths(&path).find(|dir| has_tools(dir)) {
        return Some(dir);
    }
    let version =
        |name: &str| -> Vec<u32> { name.split('.').map_while(|n| n.parse().ok()).collect() };
    fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|entry| {
            (
                version(&entry.file_name().to_string_lossy()),
                entry.path().join("bin"),
            )
        })
        .filter(|(_, bin)| has_tools(bin))
        .max()
        .map(|(_, bin)| bin)
}

/// Installs PostgreSQL with apt when we can; otherwise says how to get a database.
fn install_postgres(root: bool) -> Result<()> {
    let apt = env::split_paths(&env::var_os("PATH").unwrap_or_default())
        .any(|dir| dir.join("apt-get").is_file());
    if !(root && apt) {
        bail!(
            "no Postgres answers and no PostgreSQL binaries (initdb, pg_ctl) were found: \
             install PostgreSQL (apt install postgresql / brew install postgresql) or set DATABASE_URL"
        );
    }
    eprintln!("pgcluster: installing PostgreSQL with apt-get");
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "postgresql"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn is_root() -> Result<bool> {
    let output = Command::new("id")
        .arg("-u")
        .output()
        .context("running id -u")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn ensure_postgres_user() -> Result<()> {
    let exists = Command::new("id")
        .arg("postgres")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    if !exists {
        eprintln!("pgcluster: creating the postgres OS user");
        run(Command::new("useradd").args(["--system", "postgres"]))?;
    }
    Ok(())
}

impl Cluster {
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Stops the cluster and deletes its folder (and `base`, if it lived elsewhere).
    pub fn remove(&self) -> Result<()> {
        if self.running() {
            self.stop()?;
        }
        for folder in [&self.home, &self.base] {
            if folder.exists() {
                fs::remove_dir_all(folder)
                    .with_context(|| format!("removing {}", folder.display()))?;
            }
        }
        Ok(())
    }
}

/// `base` if the `postgres` OS user can reach and enter it (every folder above it lets
/// others through), else a folder of the system's temporary directory named after `base`,
/// which it can.
fn reachable_home(base: &Path) -> Result<PathBuf> {
    fs::create_dir_all(base).with_context(|| format!("creating {}", base.display()))?;
    ensure_postgres_user()?;
    let reachable = Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(base)
        .stdin(Stdio::null())
        .status()
        .context("running runuser")?
        .success();
    if reachable {
        return Ok(base.to_owned());
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    base.hash(&mut hasher);
    let home = env::temp_dir().join(format!("pgcluster-{:016x}", hasher.finish()));
    eprintln!(
        "pgcluster: the postgres OS user cannot reach {}; the cluster lives in {}",
        base.display(),
        home.display()
    );
    fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
    Ok(home)
}

/// Runs `command`, failing unless it succeeds.
fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {}", describe(command)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(command));
    }
    Ok(())
}

fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The private-cluster path for real: initdb, start on a free port, connect (TCP),
    /// restart on the same port, stop, remove.
    #[test]
    fn private_cluster_starts_restarts_and_stops() {
        let base = env::temp_dir().join(format!("pgcluster-test-{}", std::process::id()));
        let cluster = Cluster::new(base).expect("PostgreSQL binaries");
        let port = cluster.start().expect("private cluster starts");
        assert!(cluster.running());
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "nothing listens on {port}"
        );
        cluster.stop().expect("pg_ctl stop");
        assert!(!cluster.running());
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "still listening after stop"
        );
        assert_eq!(
            cluster.start().expect("restart"),
            port,
            "a restart keeps the port"
        );
        cluster.remove().expect("remove");
        assert!(!cluster.base().exists());
    }

    /// As root, in a folder the `postgres` OS user cannot enter (a checkout under `/root`,
    /// mode 700): the cluster still starts, living where that user can reach it. (Not
    /// root, the cluster is the caller's own and nothing is unreachable.)
    #[test]
    fn a_private_cluster_starts_under_a_folder_only_root_may_enter() {
        use std::os::unix::fs::PermissionsExt;
        let closed = env::temp_dir().join(format!("pgcluster-closed-{}", std::process::id()));
        fs::create_dir_all(&closed).unwrap();
        fs::set_permissions(&closed, fs::Permissions::from_mode(0o700)).unwrap();
        let cluster = Cluster::new(closed.join("checkout").join("pg")).expect("binaries");
        let port = cluster.start().expect("private cluster starts");
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "nothing listens on {port}"
        );
        assert_eq!(
            Cluster::new(closed.join("checkout").join("pg"))
                .unwrap()
                .start()
                .expect("found again"),
            port,
            "the same base finds the same cluster"
        );
        let home = cluster.home().to_owned();
        cluster.remove().expect("remove");
        assert!(!home.exists() && !cluster.base().exists());
        fs::remove_dir_all(&closed).unwrap();
    }
}
