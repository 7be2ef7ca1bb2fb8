//! `cargo xtask docs-check`: the API reference renders its operations in a real browser.
//!
//! Builds `emporium`, serves it on a free port against a database that answers, loads
//! `/docs` in headless Chromium (Debian's `chromium`, installed with apt when missing and
//! we are root), and checks that the rendered page lists every operation of
//! `/openapi.json`. It also leaves a screenshot in `target/docs.png` for humans. The
//! server is stopped at the end, whatever happened.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use std::{env, fs};

use anyhow::{Context, Result, bail, ensure};

use crate::server::{Server, build_debug, free_address, get};
use crate::{apt, db, describe};

const CHROMIUM: &str = "/usr/bin/chromium";
/// How long the page may take to load `/openapi.json` and render, in virtual time.
const RENDER_BUDGET_MS: u32 = 10_000;

pub(crate) fn run(root: &Path) -> Result<()> {
    let chromium = apt::ensure_installed(Path::new(CHROMIUM), "chromium")?;
    let database_url = db::ensure(root)?;
    let binary = build_debug(root)?;

    let address = free_address()?;
    let log = root.join("target").join("docs-check.log");
    fs::create_dir_all(root.join("target"))?;
    let mut server = Server::start(&binary, &address, &database_url, &[], &log)?;
    server.wait_until_ready(&address, Duration::from_secs(120))?;

    let (_, document) = get(&address, "/openapi.json")?;
    let document: serde_json::Value =
        serde_json::from_str(&document).context("/openapi.json is not JSON")?;
    let operations = operations(&document);
    ensure!(
        operations.len() > 10,
        "/openapi.json documents only {} operations",
        operations.len()
    );

    let url = format!("http://{address}/docs");
    let profile = Profile::fresh()?;
    let dom = chromium_output(&chromium, &profile, &["--dump-dom", &url])?;
    check_dom(&dom, &operations)?;

    let screenshot = root.join("target").join("docs.png");
    let _ = fs::remove_file(&screenshot);
    let profile = Profile::fresh()?;
    chromium_output(
        &chromium,
        &profile,
        &[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1280,2000",
            &url,
        ],
    )?;
    ensure!(
        screenshot.is_file(),
        "chromium wrote no screenshot at {}",
        screenshot.display()
    );
    drop(server);
    eprintln!(
        "xtask: docs-check passed: /docs renders all {} operations; screenshot in {}",
        operations.len(),
        screenshot.display()
    );
    Ok(())
}

/// The rendered page lists every operation: one Swagger UI `opblock` per operation, each
/// with its path, and no load error.
fn check_dom(dom: &str, operations: &[(String, String)]) -> Result<()> {
    ensure!(
        !dom.contains("Failed to load API definition"),
        "Swagger UI could not load /openapi.json"
    );
    let blocks = dom.matches("class=\"opblock-summary-path\"").count();
    ensure!(
        blocks == operations.len(),
        "the page shows {blocks} operations, /openapi.json has {} (is the page rendered?)",
        operations.len()
    );
    let missing: Vec<String> = operations
        .iter()
        .filter(|(method, path)| {
            !dom.contains(&format!("data-path=\"{path}\""))
                || !dom.contains(&format!("opblock-{method}"))
        })
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    ensure!(
        missing.is_empty(),
        "operations not on the page: {}",
        missing.join(", ")
    );
    Ok(())
}

/// `(method, path)` of every operation in an OpenAPI document.
fn operations(document: &serde_json::Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            found.push((method.clone(), path.clone()));
        }
    }
    found
}

/// Headless Chromium, isolated from the network and from any profile, on `args`; its
/// standard output.
fn chromium_output(chromium: &Path, profile: &Profile, args: &[&str]) -> Result<String> {
    let mut command = Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .arg(format!("--virtual-time-budget={RENDER_BUDGET_MS}"))
        .args(args)
        .stdin(Stdio::null());
    let output = command
        .output()
        .with_context(|| format!("running {}", describe(&command)))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(&command),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A fresh, empty Chromium profile directory, removed when dropped.
struct Profile(PathBuf);

impl Profile {
    fn fresh() -> Result<Profile> {
        let dir = env::temp_dir().join(format!("emporium-docs-check-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Profile(dir))
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
