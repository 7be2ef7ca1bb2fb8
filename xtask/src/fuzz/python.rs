//! The Python tools `cargo xtask fuzz` drives, in a virtual environment of the checkout's
//! own (`target/fuzz/venv`): schemathesis and openapi-python-client at pinned versions,
//! installed by pip from PyPI once and kept while the pins stay the same.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{apt, succeed};

/// What the venv holds, pinned: a new pin is a new install.
pub(crate) const REQUIREMENTS: [&str; 2] =
    ["schemathesis==4.32.5", "openapi-python-client==0.29.1"];

/// A virtual environment with [`REQUIREMENTS`] installed.
pub(crate) struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// `dir` as a venv with [`REQUIREMENTS`]: made with `python3 -m venv` (Debian's
    /// `python3-venv` installed first if that fails and we are root), then pip-installed,
    /// unless a stamp says this exact set is there already.
    pub(crate) fn ensure(dir: &Path) -> Result<Venv> {
        let venv = Venv {
            dir: dir.to_owned(),
        };
        let stamp = dir.join("requirements.txt");
        let wanted = REQUIREMENTS.join("\n");
        if venv.python().is_file() && fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted) {
            return Ok(venv);
        }
        let make = || {
            Command::new("python3")
                .args(["-m", "venv", "--clear"])
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !make() {
            apt::package("python3-venv", "python3 -m venv")?;
            succeed(
                Command::new("python3")
                    .args(["-m", "venv", "--clear"])
                    .arg(dir),
            )?;
        }
        eprintln!("xtask: pip install {}", REQUIREMENTS.join(" "));
        succeed(
            Command::new(venv.python())
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(REQUIREMENTS),
        )?;
        fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))?;
        Ok(venv)
    }

    pub(crate) fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }

    /// A program the venv installed (`schemathesis`, `openapi-python-client`).
    pub(crate) fn command(&self, program: &str) -> Command {
        Command::new(self.dir.join("bin").join(program))
    }
}
