//! Each rule can fail: fed a violating input (a fake `cargo metadata`, `cargo tree` output,
//! a crate folder with offending SQL), it names the offending edge or spot.

use std::fs;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;

/// A crate of the fake workspace at `/ws`: `(name, folder, dependencies, emporium)`.
fn package(name: &str, folder: &str, deps: &[&str], emporium: Option<Value>) -> Value {
    json!({
        "name": name,
        "manifest_path": format!("/ws/{folder}/Cargo.toml"),
        "dependencies": deps.iter().map(|d| json!({"name": d, "kind": null})).collect::<Vec<_>>(),
        "metadata": emporium.map(|e| json!({"emporium": e})),
    })
}

fn workspace(packages: Vec<Value>) -> Workspace {
    let metadata = json!({"workspace_root": "/ws", "packages": packages});
    Workspace::from_metadata(&serde_json::to_vec(&metadata).unwrap()).unwrap()
}

/// The fake workspace: users and orders (write and read side, one module) with their
/// `-api` crates, a kernel, an app; plus whatever `extra` adds.
fn shop(extra: Vec<Value>) -> Workspace {
    let mut packages = vec![
        package("kernel", "crates/kernel", &["serde"], None),
        package("users-api", "crates/users-api", &["kernel"], None),
        package("eventlog", "crates/eventlog", &["kernel"], None),
        package(
            "users",
            "crates/users",
            &["kernel", "eventlog", "users-api"],
            Some(json!({"schemas": ["users"]})),
        ),
        package(
            "orders-api",
            "crates/orders-api",
            &["kernel", "users-api"],
            None,
        ),
        package(
            "orders",
            "crates/orders",
            &["kernel", "orders-api", "users-api", "orders-read"],
            Some(json!({"schemas": ["orders"], "module": "orders"})),
        ),
        package(
            "orders-read",
            "crates/orders-read",
            &["kernel", "orders-api"],
            Some(json!({"schemas": ["orders_read"], "module": "orders"})),
        ),
        package(
            "emporium",
            "apps/emporium",
            &["kernel", "users", "orders", "orders-read"],
            None,
        ),
    ];
    // An extra crate replaces the one of its name.
    packages.retain(|p| !extra.iter().any(|e| e["name"] == p["name"]));
    packages.extend(extra);
    workspace(packages)
}

fn edges(workspace: &Workspace) -> Vec<String> {
    let names: Vec<String> = workspace.packages.iter().map(|p| p.name.clone()).collect();
    names
        .iter()
        .flat_map(|name| workspace.dependency_violations(name).unwrap())
        .collect()
}

#[test]
fn a_sound_workspace_has_no_violating_edge() {
    // orders -> orders-read is one module; the app may depend on anything.
    assert_eq!(edges(&shop(vec![])), Vec::<String>::new());
}

#[test]
fn a_module_depending_on_another_module_s_implementation_is_named() {
    let billing = package(
        "billing",
        "crates/billing",
        &["users", "orders-read"],
        Some(json!({"schemas": ["billing"]})),
    );
    assert_eq!(
        edges(&shop(vec![billing])),
        [
            "boundary: billing depends on users; depend on users-api instead",
            "boundary: billing depends on orders-read; depend on orders-api instead",
        ]
    );
}

#[test]
fn the_module_key_defaults_to_the_crate_name() {
    // Without `module`, a read side is a module of its own: orders may not reach into it.
    let read = package(
        "stock-read",
        "crates/stock-read",
        &[],
        Some(json!({"schemas": ["stock_read"]})),
    );
    let stock = package(
        "stock",
        "crates/stock",
        &["stock-read"],
        Some(json!({"schemas": ["stock"]})),
    );
    assert_eq!(
        edges(&shop(vec![read, stock])),
        ["boundary: stock depends on stock-read; module stock-read has no -api crate to depend on"]
    );
}

#[test]
fn an_api_crate_depending_on_an_implementation_is_named() {
    let api = package(
        "billing-api",
        "crates/billing-api",
        &["kernel", "users"],
        None,
    );
    assert_eq!(
        edges(&shop(vec![api])),
        [
            "boundary: billing-api depends on users; -api crates must not depend on module implementations"
        ]
    );
}

#[test]
fn a_shared_crate_that_knows_a_module_is_named() {
    let eventlog = package(
        "eventlog",
        "crates/eventlog",
        &["kernel", "orders-api"],
        None,
    );
    assert_eq!(
        edges(&shop(vec![eventlog])),
        ["boundary: eventlog depends on orders-api; a shared crate knows no module"]
    );
}

#[test]
fn an_api_crate_pulling_in_the_database_is_named() {
    let tree = "users-api v0.0.0 (/ws/crates/users-api)\nkernel v0.0.0 (/ws/crates/kernel)\n\
                diesel v2.3.0\nserde v1.0.0\n";
    assert_eq!(
        rules::api_tree("users-api", tree),
        [
            "boundary: users-api depends on diesel (via cargo tree -p users-api); -api crates must not know the database or HTTP"
        ]
    );
    assert_eq!(
        rules::api_tree("users-api", "users-api v0.0.0\nserde v1.0.0\n"),
        Vec::<String>::new()
    );
}

/// A real folder: `<tmp>/crates/<name>/src/lib.rs` and `<tmp>/migrations/...`.
struct Folder(PathBuf);

impl Folder {
    fn new(test: &str) -> Folder {
        let dir = env::temp_dir().join(format!("tidy-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Folder(dir)
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.0.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn workspace(&self, packages: Vec<Value>) -> Workspace {
        let root = self.0.display().to_string();
        let mut metadata = json!({"workspace_root": root, "packages": packages});
        for package in metadata["packages"].as_array_mut().unwrap() {
            let path = package["manifest_path"]
                .as_str()
                .unwrap()
                .replace("/ws", &root);
            package["manifest_path"] = json!(path);
        }
        Workspace::from_metadata(&serde_json::to_vec(&metadata).unwrap()).unwrap()
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn sql_and_tables_outside_the_module_s_schemas_are_named() {
    let folder = Folder::new("sources");
    folder.write(
        "crates/orders/src/lib.rs",
        "diesel::table! {\n    users.users (id) {\n        id -> Uuid,\n    }\n}\n\
         const READ: &str = \"SELECT name FROM orders_read.users\";\n\
         const PEEK: &str = \"SELECT email FROM users.users\";\n",
    );
    folder.write(
        "migrations/orders/2024_init/up.sql",
        "CREATE TABLE orders.orders (user_id uuid REFERENCES users.users (id));\n",
    );
    folder.write(
        "migrations/users/2024_init/up.sql",
        "CREATE TABLE users.users ();\n",
    );
    let workspace = folder.workspace(vec![
        package(
            "users",
            "crates/users",
            &[],
            Some(json!({"schemas": ["users"]})),
        ),
        package(
            "orders",
            "crates/orders",
            &[],
            Some(json!({"schemas": ["orders"], "module": "orders"})),
        ),
        package(
            "orders-read",
            "crates/orders-read",
            &[],
            Some(json!({"schemas": ["orders_read"], "module": "orders"})),
        ),
    ]);
    let found = workspace.source_violations("orders").unwrap();
    // orders_read is the same module's schema: not a violation.
    assert_eq!(
        found,
        [
            "boundary: orders: crates/orders/src/lib.rs:2: table `users.users` is in schema users, which this module does not own (it owns: orders, orders_read)",
            "boundary: orders: crates/orders/src/lib.rs:7: SQL names schema users, which belongs to another module",
            "boundary: orders: migrations/orders/2024_init/up.sql:1: SQL names schema users, which belongs to another module",
        ]
    );
    let missing = workspace.source_violations("orders-read").unwrap();
    assert_eq!(
        missing,
        [
            "boundary: orders-read: migrations/orders_read:0: schema orders_read has no migrations/orders_read/ folder"
        ]
    );
}

#[test]
fn a_shared_crate_s_sql_naming_a_module_schema_is_named() {
    let folder = Folder::new("shared");
    folder.write(
        "crates/eventlog/src/lib.rs",
        "const ALL: &str = \"SELECT * FROM events\";\nconst PEEK: &str = \"SELECT * FROM users.events\";\n",
    );
    folder.write(
        "migrations/users/2024_init/up.sql",
        "CREATE TABLE users.users ();\n",
    );
    let workspace = folder.workspace(vec![
        package(
            "users",
            "crates/users",
            &[],
            Some(json!({"schemas": ["users"]})),
        ),
        package("eventlog", "crates/eventlog", &[], None),
        package(
            "orders",
            "crates/orders",
            &["eventlog"],
            Some(json!({"schemas": ["orders"]})),
        ),
        package("invariants", "crates/invariants", &[], None),
    ]);
    assert_eq!(
        workspace.violations_of("eventlog").unwrap(),
        [
            "boundary: eventlog: crates/eventlog/src/lib.rs:2: SQL names schema users, which belongs to another module"
        ]
    );
    assert_eq!(
        workspace.violations_of("users").unwrap(),
        Vec::<String>::new()
    );
    // A tool no module builds on (the invariants checker reads every schema) is free.
    folder.write(
        "crates/invariants/src/lib.rs",
        "const PEEK: &str = \"SELECT * FROM users.users\";\n",
    );
    assert_eq!(
        workspace.violations_of("invariants").unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn finds_the_crate_of_a_manifest_folder() {
    let workspace = shop(vec![]);
    assert_eq!(
        workspace
            .package_in(Path::new("/ws/crates/orders-read"))
            .unwrap(),
        "orders-read"
    );
    assert!(
        workspace
            .package_in(Path::new("/ws/crates/nothing"))
            .is_err()
    );
}

#[test]
fn tidy_keeps_its_own_rules() {
    assert_tidy(env!("CARGO_MANIFEST_DIR"));
}

/// The real workspace, every crate at once (what `cargo xtask check` runs).
#[test]
fn the_workspace_keeps_every_rule() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let violations = Workspace::load(&root).unwrap().violations().unwrap();
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// The bench's floor (`xtask/floor`) names every module's schema in its SQL on purpose; it
/// is free of the rules as a tool that nothing builds on, not by being missed, and it knows
/// no emporium code (it depends on no workspace crate), so it measures what it claims to.
#[test]
fn the_bench_floor_is_a_tool_that_knows_no_emporium_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let workspace = Workspace::load(&root).unwrap();
    let floor = workspace.package("bench-floor").unwrap();
    assert_eq!(workspace.kind(floor), Kind::App);
    let ours: Vec<&str> = floor
        .dependencies
        .iter()
        .map(|d| d.name.as_str())
        .filter(|name| workspace.package(name).is_ok())
        .collect();
    assert!(ours.is_empty(), "bench-floor depends on {ours:?}");
}
