//! Data ownership enforced by Postgres, per-module migration history, database creation.

use diesel_async::RunQueryDsl;
use emporium::Config;

use crate::spawn_app;

async fn try_query(pool: &kernel::db::Pool, sql: &str) -> Result<usize, String> {
    let mut conn = kernel::db::connect(pool).await.map_err(|e| e.to_string())?;
    diesel::sql_query(sql)
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_cannot_touch_another_modules_tables() {
    let app = spawn_app().await;
    let schemas: Vec<_> = emporium::SCHEMAS
        .iter()
        .chain(emporium::READ_SCHEMAS.iter())
        .collect();
    for own in &schemas {
        let pool = kernel::db::pool(&app.db.url, own, Default::default()).unwrap();
        // A module reaches its own tables...
        try_query(&pool, &format!("SELECT count(*) FROM {}.events", own.name))
            .await
            .expect("own schema");
        // ...and nothing of another's, read or write.
        for other in schemas.iter().filter(|s| s.name != own.name) {
            for sql in [
                format!("SELECT count(*) FROM {}.events", other.name),
                format!("DELETE FROM {}.checkpoints", other.name),
                format!("CREATE TABLE {}.spy (id int)", other.name),
            ] {
                let err = try_query(&pool, &sql).await.expect_err(&sql);
                let denied = format!("permission denied for schema {}", other.name);
                assert!(err.contains(&denied), "{} running {sql}: {err}", own.name);
            }
        }
    }
    // The unqualified name resolves only within the module's own schema.
    let products_pool =
        kernel::db::pool(&app.db.url, &products::SCHEMA, Default::default()).unwrap();
    let err = try_query(&products_pool, "SELECT id FROM users")
        .await
        .expect_err("search_path");
    assert!(err.contains("does not exist"), "{err}");

    let names: Vec<String> = schemas
        .iter()
        .map(|s| format!("('{0}', 'emporium_{0}')", s.name))
        .collect();
    let owned = app
        .db
        .scalar(&format!(
            "SELECT count(*) AS n FROM pg_tables WHERE (schemaname, tableowner) IN ({})",
            names.join(", ")
        ))
        .await;
    let in_module_schemas: Vec<String> = schemas.iter().map(|s| format!("'{}'", s.name)).collect();
    let all = app
        .db
        .scalar(&format!(
            "SELECT count(*) AS n FROM pg_tables WHERE schemaname IN ({})",
            in_module_schemas.join(", ")
        ))
        .await;
    assert_eq!(owned, all, "every table is owned by its module's role");
    assert!(all >= 20, "the check saw the tables ({all})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_module_keeps_its_own_migration_history() {
    let app = spawn_app().await;
    let migration_dirs = |folder: &str| {
        std::fs::read_dir(format!(
            "{}/../../migrations/{folder}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
        .count() as i64
    };
    for schema in emporium::SCHEMAS
        .iter()
        .chain(emporium::READ_SCHEMAS.iter())
    {
        let applied = app
            .db
            .scalar(&format!(
                "SELECT count(*) AS n FROM {}.__diesel_schema_migrations",
                schema.name
            ))
            .await;
        // Its own migrations, and the event log's tables applied into it.
        assert_eq!(
            applied,
            migration_dirs(schema.name) + migration_dirs("eventlog"),
            "schema {} applied its own migrations only",
            schema.name
        );
        let events = app.db.scalar(&format!("SELECT count(*) AS n FROM pg_tables WHERE schemaname = '{}' AND tablename IN ('events', 'checkpoints', 'dead_letters')", schema.name)).await;
        assert_eq!(events, 3, "schema {} has its event log", schema.name);
    }
    let stray = app.db.scalar("SELECT count(*) AS n FROM pg_tables WHERE tablename = '__diesel_schema_migrations' AND schemaname = 'public'").await;
    assert_eq!(stray, 0, "no shared history table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_database_and_is_repeatable() {
    let name = format!("emporium_test_{}_created", std::process::id());
    let url = kernel::db::with_database(&kernel::testing::server_url(), &name).unwrap();
    let config = Config::for_database(&url);
    emporium::migrate(&config, None)
        .await
        .expect("first migrate creates the database");
    emporium::migrate(&config, None)
        .await
        .expect("second migrate is a no-op");
    emporium::migrate(&config, Some("users"))
        .await
        .expect("one schema");
    let err = emporium::migrate(&config, Some("nope")).await.unwrap_err();
    assert!(err.to_string().contains("unknown schema"), "{err}");

    let mut admin =
        kernel::db::connect_admin(&kernel::db::with_database(&url, "postgres").unwrap())
            .await
            .unwrap();
    let exists = diesel::sql_query(format!(
        "SELECT 1 FROM pg_database WHERE datname = '{name}'"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    assert_eq!(exists, 1);
    diesel::sql_query(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_migrate_safely() {
    let name = format!("emporium_test_{}_race", std::process::id());
    let url = kernel::db::with_database(&kernel::testing::server_url(), &name).unwrap();
    let config = Config::for_database(&url);
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let config = config.clone();
            tokio::spawn(async move { emporium::migrate(&config, None).await })
        })
        .collect();
    for run in runs {
        run.await
            .unwrap()
            .expect("every concurrent migrate succeeds");
    }
    let mut admin =
        kernel::db::connect_admin(&kernel::db::with_database(&url, "postgres").unwrap())
            .await
            .unwrap();
    diesel::sql_query(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// Upgrading to the one-transaction placement (migration
/// `orders/2026-12-01-210000_one_transaction_placement`): it refuses to run while a
/// placement that a crash interrupted still holds stock (the previous release's sweeper
/// must release it first), and otherwise drops what failed placements left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_transaction_placement_migration_waits_for_interrupted_placements() {
    const DOWN: &str = include_str!(
        "../../../../migrations/orders/2026-12-01-210000_one_transaction_placement/down.sql"
    );
    let db = crate::database().await;
    let mut conn = db.connect().await;
    use diesel_async::SimpleAsyncConnection;
    conn.batch_execute(DOWN).await.unwrap();
    conn.batch_execute(
        "DELETE FROM orders.__diesel_schema_migrations WHERE version = '20261201210000'; \
         INSERT INTO orders.orders (id, user_id, status, total, version, created_at, updated_at) \
         VALUES ('00000000-0000-7000-8000-000000000001', gen_random_uuid(), 'placing', 5, 0, now(), now())",
    )
    .await
    .unwrap();
    let refused = kernel::db::migrate(&db.url, &orders::SCHEMA)
        .await
        .unwrap_err();
    assert!(
        format!("{refused:#}").contains("interrupted"),
        "says why: {refused:#}"
    );

    // Released by the previous release's sweeper: `rejected`, its key freed, its lines left.
    conn.batch_execute(
        "UPDATE orders.orders SET status = 'rejected'; \
         INSERT INTO orders.order_lines (order_id, line, product_id, product_name, quantity, price) \
         VALUES ('00000000-0000-7000-8000-000000000001', 0, gen_random_uuid(), 'Mug', 1, 5); \
         INSERT INTO orders.idempotency_keys (key, request, order_id, created_at) \
         VALUES ('unanswered', '{}', '00000000-0000-7000-8000-000000000001', now())",
    )
    .await
    .unwrap();
    kernel::db::migrate(&db.url, &orders::SCHEMA)
        .await
        .expect("nothing interrupted is left: the migration runs");
    for table in ["orders", "order_lines", "idempotency_keys"] {
        let left = db
            .scalar(&format!("SELECT count(*) AS n FROM orders.{table}"))
            .await;
        assert_eq!(
            left, 0,
            "orders.{table}: what failed placements left is gone"
        );
    }
    let placing = diesel::sql_query(
        "INSERT INTO orders.orders (id, user_id, status, total, version, created_at, updated_at) \
         VALUES (gen_random_uuid(), gen_random_uuid(), 'placing', 5, 0, now(), now())",
    )
    .execute(&mut conn)
    .await;
    assert!(placing.is_err(), "`placing` is no longer a status");
}
