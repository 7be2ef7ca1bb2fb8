//! The rules that keep emporium's modules apart, as a library: `cargo xtask check` runs
//! them over the whole workspace, and each module crate runs its own share under plain
//! `cargo test` (`tests/it/tidy.rs` calls [`assert_tidy`]), as rust-analyzer's tidy tests
//! do, so a team that runs only `cargo test -p <its crate>` learns when it broke one.
//!
//! Crates are discovered from `cargo metadata`; what a crate is decides its rules:
//! - an **`-api` crate** (its name ends in `-api`): its normal dependency tree (`cargo tree
//!   -e normal`, with its own features) holds no database or HTTP crate
//!   ([`FORBIDDEN_IN_API`]), and it depends on no module implementation crate;
//! - a **module implementation crate** (it has `[package.metadata.emporium]`): it depends
//!   on no implementation crate of another module, and its `table!`s, migrations and SQL
//!   strings stay inside its module's schemas (see [`scan`](crate::scan));
//! - a **shared crate** (one that a module or `-api` crate builds on: kernel, eventlog)
//!   knows no module: it depends on no module crate (implementation or `-api`), and its
//!   SQL strings name no module's schema.
//!
//! Apps (`apps/*`) and `xtask` wire the modules together, and the tools beside them
//! (`invariants` reads every schema on purpose, `pgcluster`, this crate, and `bench-floor`,
//! the bench's hand-written reference server, which reads and copies every module's tables
//! on purpose) serve them; no rule binds those. A tool is free because no module or `-api`
//! crate builds on it: one that a module depended on would be a shared crate, held to the
//! shared crates' rules.
//!
//! A crate's module is the `module` key of its `[package.metadata.emporium]`, or its own
//! name without one. The crates of one module (the write side and the read side of orders)
//! may depend on each other, and share the module's schemas (the union of their
//! `schemas`).
//!
//! It knows nothing of emporium's code: only manifests, `cargo tree`'s output and source
//! text. Every violation is one line that names the crate and the offending edge or spot.

mod rules;
mod scan;
#[cfg(test)]
mod tests;

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

pub use rules::FORBIDDEN_IN_API;

/// The workspace's crates, as `cargo metadata --no-deps` describes them.
pub struct Workspace {
    root: PathBuf,
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Metadata {
    workspace_root: PathBuf,
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
    /// `dev`, `build`, or none for a normal dependency.
    kind: Option<String>,
}

#[derive(Deserialize)]
struct PackageMetadata {
    emporium: Option<Emporium>,
}

/// `[package.metadata.emporium]` of a module implementation crate.
#[derive(Deserialize)]
struct Emporium {
    /// The module it belongs to; its own name when missing.
    module: Option<String>,
    /// The schemas it owns; each one's migrations live in `migrations/<schema>/`.
    #[serde(default)]
    schemas: Vec<String>,
}

/// What a crate is, which decides the rules it keeps.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Api,
    Module,
    Shared,
    /// Apps, xtask, and the tools beside them (test helpers, the invariants checker).
    App,
}

impl Package {
    fn emporium(&self) -> Option<&Emporium> {
        self.metadata.as_ref()?.emporium.as_ref()
    }

    fn module(&self) -> &str {
        self.emporium()
            .and_then(|e| e.module.as_deref())
            .unwrap_or(&self.name)
    }

    fn schemas(&self) -> &[String] {
        self.emporium().map_or(&[], |e| e.schemas.as_slice())
    }

    fn dir(&self) -> &Path {
        self.manifest_path.parent().unwrap_or(Path::new("."))
    }
}

impl Workspace {
    /// The workspace that `dir` (a crate's or the root's folder) belongs to, read with
    /// `cargo metadata`.
    pub fn load(dir: &Path) -> Result<Workspace> {
        let stdout = cargo_output(
            dir,
            &[
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ],
        )?;
        Workspace::from_metadata(&stdout)
    }

    /// A workspace from `cargo metadata --format-version 1` output.
    pub fn from_metadata(json: &[u8]) -> Result<Workspace> {
        let metadata: Metadata = serde_json::from_slice(json).context("reading cargo metadata")?;
        Ok(Workspace {
            root: metadata.workspace_root,
            packages: metadata.packages,
        })
    }

    /// The name of the crate whose manifest is in `dir`.
    pub fn package_in(&self, dir: &Path) -> Result<&str> {
        self.packages
            .iter()
            .find(|p| {
                // The same folder, also when one of the paths goes through a symlink.
                let canonical = |d: &Path| std::fs::canonicalize(d).ok();
                p.dir() == dir || canonical(p.dir()).is_some_and(|c| Some(c) == canonical(dir))
            })
            .map(|p| p.name.as_str())
            .with_context(|| format!("no workspace crate has its manifest in {}", dir.display()))
    }

    /// Every rule of every crate.
    pub fn violations(&self) -> Result<Vec<String>> {
        let mut all = Vec::new();
        for package in &self.packages {
            all.extend(self.violations_of(&package.name)?);
        }
        Ok(all)
    }

    /// The rules of crate `name`: its dependency edges, and by its kind its dependency
    /// tree (`-api`: runs `cargo tree`) or its sources.
    pub fn violations_of(&self, name: &str) -> Result<Vec<String>> {
        let package = self.package(name)?;
        let mut violations = self.dependency_violations(name)?;
        match self.kind(package) {
            Kind::Api => {
                let tree = cargo_output(
                    &self.root,
                    &[
                        "tree",
                        "-p",
                        name,
                        "-e",
                        "normal",
                        "--prefix",
                        "none",
                        "--format",
                        "{p}",
                        "--offline",
                    ],
                )?;
                let tree = String::from_utf8_lossy(&tree);
                if !tree.lines().any(|l| l.starts_with(&format!("{name} "))) {
                    bail!("cargo tree -p {name} does not list {name} itself: {tree:?}");
                }
                violations.extend(rules::api_tree(name, &tree));
            }
            Kind::Module | Kind::Shared => violations.extend(self.source_violations(name)?),
            Kind::App => {}
        }
        Ok(violations)
    }

    /// The dependency-edge rules of crate `name`, from the metadata alone.
    pub fn dependency_violations(&self, name: &str) -> Result<Vec<String>> {
        let package = self.package(name)?;
        let kind = self.kind(package);
        let mut violations = Vec::new();
        let mut seen = Vec::new();
        for dependency in &package.dependencies {
            let Some(dep) = self.packages.iter().find(|p| p.name == dependency.name) else {
                continue; // not a workspace crate
            };
            if dep.name == package.name || seen.contains(&dep.name.as_str()) {
                continue;
            }
            seen.push(dep.name.as_str());
            violations.extend(rules::edge(
                (package, kind),
                (dep, self.kind(dep)),
                self.packages
                    .iter()
                    .any(|p| p.name == format!("{}-api", dep.module())),
            ));
        }
        Ok(violations)
    }

    /// The schema rules of crate `name`: its `table!`s, SQL strings and migrations.
    pub fn source_violations(&self, name: &str) -> Result<Vec<String>> {
        let package = self.package(name)?;
        let kind = self.kind(package);
        let own: Vec<String> = match kind {
            Kind::Module => self
                .packages
                .iter()
                .filter(|p| p.emporium().is_some() && p.module() == package.module())
                .flat_map(|p| p.schemas().iter().cloned())
                .collect(),
            _ => Vec::new(),
        };
        let mut foreign: Vec<String> = self
            .packages
            .iter()
            .flat_map(|p| p.schemas().iter().cloned())
            .filter(|s| !own.contains(s))
            .collect();
        foreign.sort();
        foreign.dedup();
        rules::sources(
            &self.root,
            &package.name,
            package.dir(),
            rules::Schemas {
                own: &own,
                migrated: package.schemas(),
                foreign: &foreign,
                tables: kind == Kind::Module,
            },
        )
    }

    /// Whether a module or `-api` crate has `package` as a normal dependency.
    fn built_on(&self, package: &Package) -> bool {
        self.packages
            .iter()
            .filter(|p| p.name.ends_with("-api") || p.emporium().is_some())
            .flat_map(|p| &p.dependencies)
            .any(|d| d.name == package.name && d.kind.is_none())
    }

    fn package(&self, name: &str) -> Result<&Package> {
        self.packages
            .iter()
            .find(|p| p.name == name)
            .with_context(|| format!("no crate {name} in the workspace"))
    }

    /// The module crates (`-api` and implementation crates), each with the module crates
    /// it depends on (normal dependencies only), by name: the module diagram's arrows.
    pub fn module_graph(&self) -> Vec<(String, Vec<String>)> {
        let is_module = |p: &Package| matches!(self.kind(p), Kind::Api | Kind::Module);
        let mut graph: Vec<(String, Vec<String>)> = self
            .packages
            .iter()
            .filter(|p| is_module(p))
            .map(|p| {
                let mut deps: Vec<String> = p
                    .dependencies
                    .iter()
                    .filter(|d| d.kind.is_none())
                    .filter(|d| {
                        self.packages
                            .iter()
                            .any(|q| q.name == d.name && is_module(q))
                    })
                    .map(|d| d.name.clone())
                    .collect();
                deps.sort();
                deps.dedup();
                (p.name.clone(), deps)
            })
            .collect();
        graph.sort();
        graph
    }

    fn kind(&self, package: &Package) -> Kind {
        if package.name.ends_with("-api") {
            Kind::Api
        } else if package.emporium().is_some() {
            Kind::Module
        } else if self.built_on(package) {
            Kind::Shared
        } else {
            Kind::App
        }
    }
}

/// Fails (panics, for a `#[test]`) with every violation of the crate whose manifest is in
/// `manifest_dir`: `tidy::assert_tidy(env!("CARGO_MANIFEST_DIR"))`.
pub fn assert_tidy(manifest_dir: &str) {
    let dir = Path::new(manifest_dir);
    let violations = Workspace::load(dir)
        .and_then(|workspace| {
            let name = workspace.package_in(dir)?.to_owned();
            workspace.violations_of(&name)
        })
        .unwrap_or_else(|error| panic!("tidy could not check {manifest_dir}: {error:#}"));
    assert!(
        violations.is_empty(),
        "{} boundary violation(s) (see ARCHITECTURE.md, \"Invariants and boundaries\"):\n{}",
        violations.len(),
        violations.join("\n")
    );
}

/// The cargo that runs us (`$CARGO`, set by cargo for tests and `cargo run`), else the one
/// that built us, else `cargo` from `PATH`.
fn cargo() -> OsString {
    env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(OsString::from))
        .unwrap_or_else(|| OsString::from("cargo"))
}

/// The stdout of `cargo <args>` run in `dir`; fails with its stderr.
fn cargo_output(dir: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let output = Command::new(cargo())
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "cargo {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output.stdout)
}
