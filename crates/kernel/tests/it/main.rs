//! The kernel's database plumbing against a real Postgres.

mod tidy;

use std::time::{Duration, Instant};

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use kernel::db::{self, Schema};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/it/migrations");
const SCRATCH: Schema = Schema {
    name: "scratch",
    migrations: &[&MIGRATIONS],
};

struct Fixture {
    db: kernel::testing::TestDatabase,
}

async fn fixture() -> Fixture {
    Fixture {
        db: kernel::testing::database(&[SCRATCH]).await,
    }
}

/// `generic_plans` puts every connection of a pool on generic plans; without it a pool
/// keeps Postgres's default.
#[tokio::test]
async fn a_pool_with_generic_plans_runs_every_statement_on_them() {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }
    let f = fixture().await;
    for (generic_plans, expected) in [(true, "force_generic_plan"), (false, "auto")] {
        let settings = db::PoolSettings {
            generic_plans,
            ..Default::default()
        };
        let pool = db::pool(&f.db.url, &SCRATCH, settings).unwrap();
        let mut conn = db::connect(&pool).await.unwrap();
        let setting: Setting =
            diesel::sql_query("SELECT current_setting('plan_cache_mode') AS value")
                .get_result(&mut conn)
                .await
                .unwrap();
        assert_eq!(setting.value, expected);
    }
}

/// An exhausted pool answers "unavailable" (a `503` with `Retry-After`) after its bounded
/// wait, instead of hanging the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_is_unavailable_within_its_wait() {
    let f = fixture().await;
    let settings = db::PoolSettings {
        max_size: 1,
        wait_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let pool = db::pool(&f.db.url, &SCRATCH, settings).unwrap();
    let held = db::connect(&pool).await.expect("the only connection");
    let started = Instant::now();
    let error = match db::connect(&pool).await {
        Ok(_) => panic!("a second connection from a pool of one"),
        Err(error) => error,
    };
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
    let problem = kernel::Problem::from_unexpected(&error);
    assert_eq!(
        (problem.status, problem.retry_after),
        (503, Some(1)),
        "{error:#}"
    );
    drop(held);
    assert!(
        db::connect(&pool).await.is_ok(),
        "usable again once the connection is back"
    );
}

/// A raw statement wrapped in `db::prepared` is prepared once per connection and kept (it
/// shows in the session's `pg_prepared_statements`, once however often it ran); a plain
/// `sql_query` is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_raw_statements_are_kept_per_connection() {
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    const KEPT: &str = "SELECT $1::bigint + 1 AS n";
    const NOT_KEPT: &str = "SELECT $1::bigint + 2 AS n";
    let f = fixture().await;
    let pool = db::pool(&f.db.url, &SCRATCH, Default::default()).unwrap();
    let mut conn = db::connect(&pool).await.unwrap();
    for i in 0..3 {
        let kept: N = db::prepared(diesel::sql_query(KEPT).bind::<BigInt, _>(i))
            .get_result(&mut *conn)
            .await
            .unwrap();
        assert_eq!(kept.n, i + 1, "binds reach the statement");
        let plain: N = diesel::sql_query(NOT_KEPT)
            .bind::<BigInt, _>(i)
            .get_result(&mut *conn)
            .await
            .unwrap();
        assert_eq!(plain.n, i + 2);
    }
    let held = |sql: &'static str| {
        diesel::sql_query("SELECT count(*) AS n FROM pg_prepared_statements WHERE statement = $1")
            .bind::<diesel::sql_types::Text, _>(sql)
    };
    let kept: N = held(KEPT).get_result(&mut *conn).await.unwrap();
    let plain: N = held(NOT_KEPT).get_result(&mut *conn).await.unwrap();
    assert_eq!(
        (kept.n, plain.n),
        (1, 0),
        "prepared once, and only the wrapped one"
    );
}

/// A statement that runs past the pool's `statement_timeout` is cancelled and answered
/// `503`; a connection left idle inside a transaction past its timeout is ended by the
/// server (its locks with it), and the pool hands out a working one after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_and_idle_transactions_are_bounded() {
    use diesel_async::RunQueryDsl;
    let f = fixture().await;
    let settings = db::PoolSettings {
        statement_timeout: Duration::from_millis(200),
        idle_in_transaction_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let pool = db::pool(&f.db.url, &SCRATCH, settings).unwrap();
    let mut conn = db::connect(&pool).await.unwrap();
    let started = Instant::now();
    let error = diesel::sql_query("SELECT pg_sleep(5)")
        .execute(&mut *conn)
        .await
        .expect_err("cancelled");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "ran {:?}",
        started.elapsed()
    );
    let problem = kernel::Problem::from_unexpected(&anyhow::Error::from(error));
    assert_eq!(problem.status, 503, "{problem:?}");

    diesel::sql_query("BEGIN")
        .execute(&mut *conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ended = diesel::sql_query("SELECT 1").execute(&mut *conn).await;
    assert!(ended.is_err(), "the idle transaction's session was ended");
    drop(conn);
    let mut fresh = db::connect(&pool).await.unwrap();
    assert_eq!(
        diesel::sql_query("SELECT 1")
            .execute(&mut *fresh)
            .await
            .ok(),
        Some(1),
        "the pool recycles the ended connection"
    );
}
