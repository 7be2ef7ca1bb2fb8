//! `cargo xtask check`: formatting, clippy, the `-api` crates built on their own, and the
//! rules that keep modules apart.
//!
//! The boundary rules live in the `tidy` crate (see its header for the list); here they
//! run over every crate at once, every violation one line, all reported before we fail.
//! Each module crate also runs its own share under `cargo test` (`tests/it/tidy.rs`).

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::{cargo, succeed};

pub(crate) fn run(root: &Path) -> Result<()> {
    eprintln!("xtask: cargo fmt --all --check");
    succeed(&mut cargo(root, &["fmt", "--all", "--check"]))
        .context("formatting differs: run `cargo fmt --all`")?;
    eprintln!("xtask: cargo clippy --workspace --all-targets -- -D warnings");
    succeed(&mut cargo(
        root,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ))?;
    // On their own, features are not unified with the implementations': an `-api` crate
    // that needs the kernel's `db` (or any crate the others enable) fails here, where the
    // workspace build would hide it.
    eprintln!("xtask: cargo check of the -api crates on their own");
    succeed(&mut cargo(
        root,
        &[
            "check",
            "-p",
            "users-api",
            "-p",
            "products-api",
            "-p",
            "payments-api",
            "-p",
            "orders-api",
        ],
    ))
    .context("an -api crate does not build without what the implementations enable")?;
    eprintln!("xtask: checking module boundaries");
    let violations = tidy::Workspace::load(root)?.violations()?;
    for violation in &violations {
        println!("{violation}");
    }
    if !violations.is_empty() {
        bail!("{} boundary violation(s)", violations.len());
    }
    eprintln!("xtask: check passed");
    Ok(())
}
