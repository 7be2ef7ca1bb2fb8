//! Measuring a subscription's backlog costs the backlog, not the log: what `/metrics` and
//! `/admin/projections` run on every scrape reads a few index pages of a log of 100 000
//! events, and counts the events after a position exactly.

use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use eventlog::{EventSource, PgEventSource, Position};
use kernel::testing::Plan;

use crate::fixture;

#[derive(diesel::QueryableByName)]
struct Last {
    #[diesel(sql_type = BigInt)]
    xid: i64,
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_costs_the_backlog_not_the_log() {
    let f = fixture().await;
    let mut conn = f.db.connect().await;
    diesel::sql_query(
        "INSERT INTO ledger.events (event_id, event_type, aggregate_id, aggregate_version, \
         occurred_at, schema_version, payload) \
         SELECT gen_random_uuid(), 'test.happened', gen_random_uuid(), 1, now(), 1, '{}' \
         FROM generate_series(1, 100000)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("ANALYZE ledger.events")
        .execute(&mut conn)
        .await
        .unwrap();
    // A position 25 events before the end.
    let at: Last = diesel::sql_query(
        "SELECT xid::text::bigint AS xid, seq FROM ledger.events ORDER BY xid, seq \
         OFFSET 99975 LIMIT 1",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    let position = Position {
        xid: at.xid,
        seq: at.seq,
    };
    let source = PgEventSource {
        schema: "ledger",
        pool: f.pool.clone(),
    };
    assert_eq!(source.backlog(position).await.unwrap().events, 24);
    assert_eq!(
        source.backlog(Position::default()).await.unwrap().events,
        100_000
    );

    let plan: Plan = diesel::sql_query(Plan::explain(&eventlog::backlog_statement("ledger")))
        .bind::<BigInt, _>(position.xid)
        .bind::<BigInt, _>(position.seq)
        .bind::<BigInt, _>(eventlog::BACKLOG_CAP)
        .get_result(&mut conn)
        .await
        .unwrap();
    let types = plan.node_types();
    assert!(
        !types.iter().any(|t| t == "Seq Scan"),
        "no sequential scan: {types:?}"
    );
    let touched = plan.buffers();
    assert!(
        touched < 50,
        "touched {touched} buffers of a log of some 2000 pages: {plan}"
    );
}
