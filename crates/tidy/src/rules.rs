//! The rules themselves, on plain inputs (a crate and its dependency, `cargo tree`'s
//! output, a crate's folder), each violation one line naming the crate and what it did.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::{Kind, Package, scan};

/// Crates an `-api` crate must not pull in, even transitively.
pub const FORBIDDEN_IN_API: [&str; 6] = [
    "diesel",
    "diesel-async",
    "diesel_migrations",
    "actix-web",
    "actix-http",
    "tokio-postgres",
];

/// The edge from `package` to `dep`, both workspace crates; `dep_has_api`: its module has
/// an `-api` crate to depend on instead.
pub(crate) fn edge(
    (package, kind): (&Package, Kind),
    (dep, dep_kind): (&Package, Kind),
    dep_has_api: bool,
) -> Option<String> {
    let (name, on) = (&package.name, &dep.name);
    match (kind, dep_kind) {
        (Kind::Module, Kind::Module) if package.module() != dep.module() => {
            let instead = if dep_has_api {
                format!("depend on {}-api instead", dep.module())
            } else {
                format!("module {} has no -api crate to depend on", dep.module())
            };
            Some(format!("boundary: {name} depends on {on}; {instead}"))
        }
        (Kind::Api, Kind::Module) => Some(format!(
            "boundary: {name} depends on {on}; -api crates must not depend on module implementations"
        )),
        (Kind::Shared, Kind::Module | Kind::Api) => Some(format!(
            "boundary: {name} depends on {on}; a shared crate knows no module"
        )),
        _ => None,
    }
}

/// Rule a: the crates of [`FORBIDDEN_IN_API`] in `tree`, the output of `cargo tree -p
/// <name> -e normal --prefix none --format {p}` for `-api` crate `name`.
pub(crate) fn api_tree(name: &str, tree: &str) -> Vec<String> {
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    FORBIDDEN_IN_API
        .iter()
        .filter(|c| crates.contains(c))
        .map(|c| format!(
            "boundary: {name} depends on {c} (via cargo tree -p {name}); -api crates must not know the database or HTTP"
        ))
        .collect()
}

/// The schemas a crate's sources are held to.
pub(crate) struct Schemas<'a> {
    /// Its module's: what its `table!`s may be declared in.
    pub(crate) own: &'a [String],
    /// Its own `schemas`, whose `migrations/<schema>/` it owns.
    pub(crate) migrated: &'a [String],
    /// Every other module's: what its SQL must not name.
    pub(crate) foreign: &'a [String],
    /// Whether its `table!`s are checked (a module's are; a shared crate's tables live in
    /// every schema and are not qualified).
    pub(crate) tables: bool,
}

/// Rule c: the `table!`s and SQL strings under `<dir>/src`, and the migrations of the
/// schemas it owns, in `<root>/migrations/<schema>/`.
pub(crate) fn sources(
    root: &Path,
    name: &str,
    dir: &Path,
    schemas: Schemas<'_>,
) -> Result<Vec<String>> {
    let mut violations = Vec::new();
    let mut report = |path: &Path, findings: Vec<scan::Finding>| {
        let path = path.strip_prefix(root).unwrap_or(path).display();
        violations.extend(
            findings
                .into_iter()
                .map(|f| format!("boundary: {name}: {path}:{}: {}", f.line, f.message)),
        );
    };
    for path in files(&dir.join("src"), "rs")? {
        let text = read(&path)?;
        if schemas.tables {
            report(&path, scan::tables(&text, schemas.own));
        }
        report(&path, scan::sql_in_rust(&text, schemas.foreign));
    }
    for schema in schemas.migrated {
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
            report(&path, scan::sql(&read(&path)?, schemas.foreign));
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
