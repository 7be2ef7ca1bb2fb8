//! Connections: a lost one answers unavailable, and a subscriber that reads its own pool
//! progresses with a single connection.

use super::*;

/// An append on a connection the server has ended fails as "unavailable" (a `503`), though
/// its error only went through `anyhow::Context`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_on_a_lost_connection_is_unavailable() {
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    let f = fixture().await;
    let mut conn = write_conn(&f).await;
    let Pid { pid } = diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result(&mut *conn)
        .await
        .unwrap();
    let mut admin = f.db.connect().await;
    diesel::sql_query("SELECT pg_terminate_backend($1)")
        .bind::<diesel::sql_types::Integer, _>(pid)
        .execute(&mut admin)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let query = format!("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = {pid}");
    while f.db.scalar(&query).await > 0 {
        assert!(Instant::now() < deadline, "backend {pid} still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let event = test_event(1, serde_json::json!({}));
    let error = eventlog::append(&mut conn, "ledger", &[event])
        .await
        .expect_err("the connection is gone");
    let problem = kernel::Problem::from_unexpected(&error);
    assert_eq!(
        (problem.status, problem.retry_after),
        (503, Some(1)),
        "{error:#}"
    );
}

/// A subscription whose source is its own pool's log, as the order saga's is, on a pool of
/// one connection: a step must never hold a connection while it waits for another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_reading_its_own_pool_progresses_with_one_connection() {
    let f = fixture().await;
    let settings = db::PoolSettings {
        max_size: 1,
        wait_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let pool = db::pool(&f.db.url, &LEDGER, settings).unwrap();
    let subscription = Subscription {
        subscriber: f.recorder.clone(),
        source: Arc::new(PgEventSource {
            schema: "ledger",
            pool: pool.clone(),
        }),
        pool: pool.clone(),
        schema: "ledger",
    };
    subscription.register().await.unwrap();
    {
        let mut conn = db::connect(&pool).await.unwrap();
        f.append(&mut conn, 1, false).await;
        f.append(&mut conn, 2, false).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.applied().await.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "never applied: {:?}",
            f.applied().await
        );
        let step = subscription.step(100).await;
        assert!(step.is_ok(), "a step on a pool of one failed: {step:?}");
    }
    assert_eq!(f.applied().await, [1, 2]);
    assert_eq!(subscription.step(100).await.unwrap(), StepOutcome::Idle);
}
