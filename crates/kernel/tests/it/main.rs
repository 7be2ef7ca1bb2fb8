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
