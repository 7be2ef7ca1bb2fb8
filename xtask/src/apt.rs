//! Tools xtask needs from Debian: installed with apt when missing and we are root,
//! otherwise a one-line instruction.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::succeed;

/// `binary`, installing Debian's `package` first if it is missing (as root, with apt).
pub(crate) fn ensure_installed(binary: &Path, package: &str) -> Result<PathBuf> {
    install(binary, package, None)
}

/// [`ensure_installed`] for a tool that comes with a daemon we do not want (promtool in
/// `prometheus`): where apt started and enabled `service`, it is stopped and disabled.
pub(crate) fn ensure_tool_of(binary: &Path, package: &str, service: &str) -> Result<PathBuf> {
    install(binary, package, Some(service))
}

fn install(binary: &Path, package: &str, unwanted: Option<&str>) -> Result<PathBuf> {
    if binary.is_file() {
        return Ok(binary.to_owned());
    }
    self::package(package, &binary.display().to_string())?;
    ensure!(
        binary.is_file(),
        "{package} is installed but {} is not",
        binary.display()
    );
    if let Some(service) = unwanted {
        // Best effort: without systemd (a container) apt started nothing.
        let stopped = Command::new("systemctl")
            .args(["disable", "--now", service])
            .status();
        if !stopped.is_ok_and(|s| s.success()) {
            eprintln!(
                "xtask: {service} was not disabled (no systemd?); check that it is not running"
            );
        }
    }
    Ok(binary.to_owned())
}

/// Installs Debian's `package` (as root, with apt), or fails saying that `what` is
/// missing and how to install it.
pub(crate) fn package(package: &str, what: &str) -> Result<()> {
    let apt = env::split_paths(&env::var_os("PATH").unwrap_or_default())
        .any(|dir| dir.join("apt-get").is_file());
    if !(is_root()? && apt) {
        bail!(
            "{what} is missing: install Debian's {package} package (sudo apt-get install {package})"
        );
    }
    eprintln!("xtask: installing {package} with apt-get");
    succeed(Command::new("apt-get").arg("update"))?;
    succeed(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn is_root() -> Result<bool> {
    let output = Command::new("id")
        .arg("-u")
        .output()
        .context("running id -u")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}
