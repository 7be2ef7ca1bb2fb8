//! A private `nats-server` with JetStream in a folder of its own, started from the
//! system's binary (installed with apt when missing and we are root): what tests and
//! `cargo xtask chaos` use when they need a NATS they may kill and start again.
//!
//! The server keeps its JetStream store in `<base>/store`, logs to `<base>/log` and keeps
//! its port in `<base>/port`, so a restart reuses both: what it stored survives a kill.
//! It listens on 127.0.0.1 only. [`stream_messages`] reads a stream back, whole (`stream.rs`),
//! for whoever judges what it holds. Knows nothing of emporium.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use std::{env, fs};

use anyhow::{Context, Result, bail};

mod stream;

pub use stream::{StoredMessage, stream_messages};

/// A private NATS server; killed when dropped.
pub struct NatsServer {
    base: PathBuf,
    port: u16,
    /// Its HTTP monitoring port (`/connz`, `/jsz`).
    monitor: u16,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server in `base` (absolute), on a free port, or the port it had before.
    pub fn start(base: PathBuf) -> Result<NatsServer> {
        let binary = binary()?;
        fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        let port_file = base.join("port");
        let port = match fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            Some(port) => port,
            None => TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
        };
        fs::write(&port_file, format!("{port}\n"))?;
        let monitor = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = NatsServer {
            base,
            port,
            monitor,
            child: None,
        };
        server.spawn(&binary)?;
        Ok(server)
    }

    fn spawn(&mut self, binary: &PathBuf) -> Result<()> {
        let log = fs::File::create(self.base.join("log"))?;
        let child = Command::new(binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-m",
                &self.monitor.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.base.join("store"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting nats-server")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "nats-server did not listen within 10 s; see {}",
                    self.base.join("log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<monitoring port>`: `/connz` lists the connections with their
    /// message counts.
    pub fn monitoring_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// `kill -9`: what it acknowledged is on disk (JetStream syncs its store), the rest of
    /// its connections' traffic is lost.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("killing nats-server")?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts it again after [`NatsServer::kill`], on the same port and store.
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.spawn(&binary()?)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// `nats-server` on the PATH, or installed with apt (Debian's package `nats-server`).
fn binary() -> Result<PathBuf> {
    // Debian's package puts it in /usr/sbin, which a user's PATH may lack.
    let find = || {
        env::split_paths(&env::var_os("PATH").unwrap_or_default())
            .chain([PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join("nats-server"))
            .find(|path| path.is_file())
    };
    if let Some(path) = find() {
        return Ok(path);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        bail!("nats-server is not installed: apt install nats-server");
    }
    eprintln!("natsserver: installing nats-server with apt-get");
    for args in [&["update"][..], &["install", "-y", "nats-server"][..]] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed", args.join(" "));
        }
    }
    find().context("nats-server is installed but not on the PATH")
}
