//! `cargo xtask new-migration MODULE NAME`: an empty, timestamped diesel migration.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, ensure};

/// Creates `migrations/<schema>/<UTC timestamp>_<name>/{up,down}.sql` and prints their paths.
pub(crate) fn create(root: &Path, schema: &str, name: &str) -> Result<()> {
    let migrations = root.join("migrations");
    let mut schemas: Vec<String> = fs::read_dir(&migrations)
        .with_context(|| format!("reading {}", migrations.display()))?
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    schemas.sort();
    ensure!(
        schemas.iter().any(|m| m == schema),
        "no schema `{schema}` under migrations/; schemas: {}",
        schemas.join(", ")
    );
    ensure!(
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "migration name `{name}` must be snake_case ([a-z0-9_]+)"
    );
    let stamp = chrono::Utc::now().format("%Y-%m-%d-%H%M%S");
    let folder = migrations.join(schema).join(format!("{stamp}_{name}"));
    // `create_dir`, not `create_dir_all`: an existing migration is never overwritten.
    fs::create_dir(&folder).with_context(|| format!("creating {}", folder.display()))?;
    // The folder is named after the schema its migrations run in (kernel::db::Schema).
    let header = format!(
        "-- {schema}: {name}\n\
         -- Runs as role emporium_{schema} with search_path = {schema}; touch only schema {schema}.\n"
    );
    for file in ["up.sql", "down.sql"] {
        let path = folder.join(file);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| f.write_all(header.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.strip_prefix(root).unwrap_or(&path).display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_migration_and_refuses_bad_input() {
        let root =
            std::env::temp_dir().join(format!("xtask-migration-test-{}", std::process::id()));
        fs::create_dir_all(root.join("migrations/users")).unwrap();
        let created = create(&root, "users", "add_avatar");
        let unknown = create(&root, "orders", "add_x").unwrap_err().to_string();
        let bad_name = create(&root, "users", "Add-Avatar")
            .unwrap_err()
            .to_string();
        let folders: Vec<_> = fs::read_dir(root.join("migrations/users"))
            .unwrap()
            .flatten()
            .collect();
        let up = fs::read_to_string(folders[0].path().join("up.sql")).unwrap();
        let down_exists = folders[0].path().join("down.sql").is_file();
        fs::remove_dir_all(&root).unwrap();

        created.unwrap();
        assert!(unknown.contains("schemas: users"), "{unknown}");
        assert!(bad_name.contains("snake_case"), "{bad_name}");
        assert_eq!(folders.len(), 1);
        assert!(
            folders[0]
                .file_name()
                .to_string_lossy()
                .ends_with("_add_avatar")
        );
        assert!(up.starts_with("-- users: add_avatar\n"), "{up}");
        assert!(down_exists);
    }
}
