//! Generations after a rebuild: the one it retired is deleted in bounded transactions of
//! their own (never one transaction over a whole generation, which would hold back every
//! reader of every event log for as long as it ran), and a deletion cut short is finished
//! later.

use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use kernel::{Money, NewEvent, OrderId, ProductId, UserId};
use orders_api::events;

use crate::{ORDER_LOG, TestApp, publish, spawn_app};

/// Orders in the generation to retire: several deletion batches.
const ORDERS: i64 = 2500;

const LIVE: &str = "SELECT id::bigint AS n FROM orders_read.generations WHERE state = 'live'";

/// Publishes [`ORDERS`] orders in one transaction.
async fn place_many(app: &TestApp) -> Vec<OrderId> {
    let price = Money::parse("3.00").unwrap();
    let (user, product) = (UserId::generate(), ProductId::generate());
    let ids: Vec<OrderId> = (0..ORDERS).map(|_| OrderId::generate()).collect();
    let created: Vec<NewEvent> = ids
        .iter()
        .map(|&id| {
            let order = events::OrderCreated {
                user_id: user,
                user_name: "Buyer".to_owned(),
                user_email: "buyer@example.com".to_owned(),
                items: vec![
                    events::OrderLine::new(product, "Lamp".to_owned(), 1, price).expect("a line"),
                ],
                total: price,
            };
            NewEvent::new(events::ORDER_CREATED, id, 1, &order)
        })
        .collect();
    publish(&app.log, &ORDER_LOG, &created).await;
    ids
}

/// Polls `sql` (one bigint `n`) until `done` says so.
async fn until(app: &TestApp, what: &str, sql: &str, done: impl Fn(i64) -> bool) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = app.db.scalar(sql).await;
        if done(n) {
            return n;
        }
        assert!(Instant::now() < deadline, "{what}: still {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_generation_is_deleted_in_bounded_transactions_and_finished_after_a_crash() {
    let app = spawn_app().await;
    let ids = place_many(&app).await;
    let live_orders = "SELECT count(*) AS n FROM orders_read.orders WHERE generation = 1";
    until(
        &app,
        "the live projection applies every order",
        live_orders,
        |n| n == ORDERS,
    )
    .await;

    // A reader holds the last order of generation 1 (in key order) locked, so whatever
    // transaction deletes it waits; whatever was deleted before it and committed shows.
    let mut blocker = app.db.connect().await;
    diesel::sql_query("BEGIN")
        .execute(&mut blocker)
        .await
        .unwrap();
    diesel::sql_query(
        "SELECT id FROM orders_read.orders WHERE generation = 1 ORDER BY id DESC LIMIT 1 FOR UPDATE",
    )
    .execute(&mut blocker)
    .await
    .unwrap();

    let generation = app.side.rebuild().await.unwrap();
    assert_eq!(generation, 2);
    until(&app, "the rebuild goes live", LIVE, |n| n == 2).await;
    until(
        &app,
        "generation 1 was not deleted piecewise: all its rows wait on one transaction",
        live_orders,
        |n| n < ORDERS,
    )
    .await;

    // The deletion stands at the locked row: cut it short, as a crash would.
    let waiting = "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'";
    until(
        &app,
        "the deletion waits for the locked order",
        waiting,
        |n| n == 1,
    )
    .await;
    let killed = app
        .db
        .scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .await;
    assert_eq!(killed, 1);
    drop(blocker);
    let left = app.db.scalar(live_orders).await;
    assert!(
        (1..ORDERS).contains(&left),
        "cut short midway: {left} of {ORDERS} orders left"
    );
    assert_eq!(
        app.db
            .scalar("SELECT count(*) AS n FROM orders_read.generations WHERE id = 1 AND state = 'retired'")
            .await,
        1,
        "the generation stays retired until its last row is gone"
    );

    // Whoever looks next (a restarted process, another rebuild) finishes the deletion.
    app.side.delete_retired_generations().await.unwrap();
    let rows_of_1 = "SELECT (SELECT count(*) FROM orders_read.orders WHERE generation = 1) \
         + (SELECT count(*) FROM orders_read.order_items WHERE generation = 1) \
         + (SELECT count(*) FROM orders_read.users WHERE generation = 1) \
         + (SELECT count(*) FROM orders_read.products WHERE generation = 1) \
         + (SELECT count(*) FROM orders_read.order_counts WHERE generation = 1) \
         + (SELECT count(*) FROM orders_read.generations WHERE id = 1) AS n";
    assert_eq!(app.db.scalar(rows_of_1).await, 0, "generation 1 is gone");
    let view = app.view(&ids[0].to_string(), 1).await;
    assert_eq!(view["items"][0]["product_name"], "Lamp");
    assert_eq!(
        app.db
            .scalar("SELECT count(*) AS n FROM orders_read.orders WHERE generation = 2")
            .await,
        ORDERS
    );
}
