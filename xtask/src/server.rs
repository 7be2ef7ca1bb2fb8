//! Running the `emporium` binary (or the bench's floor, which takes the same arguments)
//! from xtask: build it, start it on a free port, wait until ready, read its memory from
//! `/proc`, kill it (on drop too, so a failing check never
//! leaves a server behind), and plain HTTP/1.1 GETs.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::db::DbUrl;
use crate::{cargo, succeed};

/// `cargo build --release -p emporium`; the binary's path.
pub(crate) fn build_release(root: &Path) -> Result<PathBuf> {
    eprintln!("xtask: cargo build --release -p emporium");
    succeed(&mut cargo(root, &["build", "--release", "-p", "emporium"]))?;
    Ok(target_directory(root)?.join("release").join("emporium"))
}

/// `cargo build -p emporium`; the binary's path.
pub(crate) fn build_debug(root: &Path) -> Result<PathBuf> {
    eprintln!("xtask: cargo build -p emporium");
    succeed(&mut cargo(root, &["build", "-p", "emporium"]))?;
    Ok(target_directory(root)?.join("debug").join("emporium"))
}

/// `127.0.0.1:<a port nothing listens on now>`.
pub(crate) fn free_address() -> Result<String> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    Ok(format!("127.0.0.1:{port}"))
}

/// `emporium serve`, killed when dropped (also when the check fails).
pub(crate) struct Server {
    child: Child,
    /// The binary's file name, for messages.
    name: String,
    log: PathBuf,
}

impl Server {
    /// Starts `binary serve` on `address` against `database_url`, with `env` on top,
    /// logging to `log`.
    pub(crate) fn start(
        binary: &Path,
        address: &str,
        database_url: &DbUrl,
        env: &[(&str, &str)],
        log: &Path,
    ) -> Result<Server> {
        let output =
            fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(binary)
            .arg("serve")
            .env("HTTP_ADDR", address)
            .env("DATABASE_URL", database_url.as_str())
            .env("LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let name = binary.file_name().map_or("emporium".into(), |name| {
            name.to_string_lossy().into_owned()
        });
        eprintln!(
            "xtask: {name} serves on http://{address} (log: {})",
            log.display()
        );
        Ok(Server {
            child,
            name,
            log: log.to_owned(),
        })
    }

    /// Polls `/health/ready` until it answers `200`, the process exits, or `timeout`.
    pub(crate) fn wait_until_ready(&mut self, address: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = get(address, "/health/ready") {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}); see {}",
                    self.name,
                    self.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} was not ready within {timeout:?}; see {}",
                    self.name,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Server {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A memory figure of the process from `/proc/<pid>/status`, in KiB: `VmRSS` (resident
    /// now) or `VmHWM` (the peak of it).
    pub(crate) fn memory_kib(&self, field: &str) -> Result<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} in /proc/{}/status", self.pid()))
    }

    /// `kill -9`: no shutdown, as a crash.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` over plain HTTP/1.1: the status and the body.
pub(crate) fn get(address: &str, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("an HTTP response without a blank line")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("an HTTP response without a status")?;
    ensure!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "GET {path} answered a chunked body"
    );
    Ok((status, body.to_owned()))
}

/// Where cargo puts build output (`target/`, unless configured otherwise).
pub(crate) fn target_directory(root: &Path) -> Result<PathBuf> {
    let output = cargo(root, &["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    ensure!(output.status.success(), "cargo metadata failed");
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}
