//! `cargo xtask check`: formatting, clippy, and the rules that keep modules apart.
//!
//! Boundary rules (every violation is one line; all are reported, then we fail):
//! - an `-api` crate's normal dependency tree holds no database or HTTP crate;
//! - a module implementation crate (one with `[package.metadata.emporium]`) depends on no
//!   other module implementation crate, and no `-api` crate depends on one;
//! - a module's `table!`s, migrations and SQL strings stay inside its own schemas
//!   (see [`crate::scan`]).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::{cargo, scan, succeed};

/// Crates an `-api` crate must not pull in, even transitively.
const FORBIDDEN_IN_API: [&str; 6] = [
    "diesel",
    "diesel-async",
    "diesel_migrations",
    "actix-web",
    "actix-http",
    "tokio-postgres",
];

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    dependencies: Vec<Dependency>,
    metadata: Option<PackageMetadata>,
}

#[derive(Deserialize)]
struct Dependency {
    name: String,
}

#[derive(Deserialize)]
struct PackageMetadata {
    emporium: Option<Module>,
}

/// `[package.metadata.emporium]` of a module implementation crate.
#[derive(Deserialize)]
struct Module {
    /// The schemas it owns; each one's migrations live in `migrations/<schema>/`.
    #[serde(default)]
    schemas: Vec<String>,
}

impl Package {
    fn module(&self) -> Option<&Module> {
        self.metadata.as_ref()?.emporium.as_ref()
    }

    fn is_api(&self) -> bool {
        self.name.ends_with("-api")
    }
}

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
    eprintln!("xtask: checking module boundaries");
    let violations = boundaries(root)?;
    for violation in &violations {
        println!("{violation}");
    }
    if !violations.is_empty() {
        bail!("{} boundary violation(s)", violations.len());
    }
    eprintln!("xtask: check passed");
    Ok(())
}

fn boundaries(root: &Path) -> Result<Vec<String>> {
    let output = cargo(root, &["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: Metadata =
        serde_json::from_slice(&output.stdout).context("reading cargo metadata")?;
    let packages = &metadata.packages;
    let modules: BTreeSet<&str> = packages
        .iter()
        .filter(|p| p.module().is_some())
        .map(|p| p.name.as_str())
        .collect();

    let mut violations = Vec::new();
    for package in packages.iter().filter(|p| p.is_api()) {
        violations.extend(api_tree(root, &package.name)?);
    }
    for package in packages {
        let on_modules = package
            .dependencies
            .iter()
            .map(|d| d.name.as_str())
            .filter(|&d| modules.contains(d) && d != package.name)
            .collect::<BTreeSet<_>>();
        for dep in on_modules {
            if package.module().is_some() {
                violations.push(format!(
                    "boundary: {} depends on {dep}; depend on {dep}-api instead",
                    package.name
                ));
            } else if package.is_api() {
                violations.push(format!(
                    "boundary: {} depends on {dep}; -api crates must not depend on module implementations",
                    package.name
                ));
            }
        }
    }
    for package in packages {
        if let Some(module) = package.module() {
            violations.extend(sources(root, package, module, packages)?);
        }
    }
    Ok(violations)
}

/// Rule a: the normal dependencies of `-api` crate `name`, with its features alone.
fn api_tree(root: &Path, name: &str) -> Result<Vec<String>> {
    let args = [
        "tree", "-p", name, "-e", "normal", "--prefix", "none", "--format", "{p}",
    ];
    let output = cargo(root, &args).output().context("running cargo tree")?;
    if !output.status.success() {
        bail!(
            "cargo tree -p {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let tree = String::from_utf8_lossy(&output.stdout);
    let crates: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    Ok(FORBIDDEN_IN_API
        .iter()
        .filter(|c| crates.contains(*c))
        .map(|c| format!(
            "boundary: {name} depends on {c} (via cargo tree -p {name}); -api crates must not know the database or HTTP"
        ))
        .collect())
}

/// Rule c: the module's `table!`s and SQL (migrations and Rust strings).
fn sources(
    root: &Path,
    package: &Package,
    module: &Module,
    packages: &[Package],
) -> Result<Vec<String>> {
    let foreign: Vec<String> = packages
        .iter()
        .filter(|p| p.name != package.name)
        .filter_map(Package::module)
        .flat_map(|m| {
            m.schemas
                .iter()
                .filter(|s| !module.schemas.contains(s))
                .cloned()
        })
        .collect();
    let dir = package
        .manifest_path
        .parent()
        .context("manifest has no folder")?;
    let mut violations = Vec::new();
    let mut report = |path: &Path, findings: Vec<scan::Finding>| {
        let path = path.strip_prefix(root).unwrap_or(path).display();
        violations.extend(findings.into_iter().map(|f| {
            format!(
                "boundary: {}: {path}:{}: {}",
                package.name, f.line, f.message
            )
        }));
    };
    for path in files(&dir.join("src"), "rs")? {
        let text = read(&path)?;
        report(&path, scan::tables(&text, &module.schemas));
        report(&path, scan::sql_in_rust(&text, &foreign));
    }
    for schema in &module.schemas {
        let folder = root.join("migrations").join(schema);
        if !folder.is_dir() {
            let missing = scan::Finding {
                line: 0,
                message: format!("schema {schema} has no migrations/{schema}/ folder"),
            };
            report(&folder, vec![missing]);
            continue;
        }
        for path in files(&folder, "sql")? {
            report(&path, scan::sql(&read(&path)?, &foreign));
        }
    }
    Ok(violations)
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Files under `dir` (recursively) with extension `ext`, sorted.
fn files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    if !dir.is_dir() {
        return Ok(found);
    }
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            found.extend(files(&path, ext)?);
        } else if path.extension().is_some_and(|e| e == ext) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}
