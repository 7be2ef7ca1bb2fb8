//! List totals: exact under every filter while orders are created, change status and are
//! redelivered, across a rebuild and the deletion of the generation it retired; and read
//! from a handful of counted rows, not by counting the orders, however many there are.

use std::collections::BTreeMap;

use diesel::sql_types::{Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use kernel::testing::Plan;
use kernel::{NewEvent, OrderId, PaymentId};
use orders_api::{OrderStatus, events};

use crate::{TestApp, spawn_app};

const STATUSES: [&str; 5] = ["pending", "confirmed", "shipped", "delivered", "cancelled"];

/// Every filter a list takes (none, a user, a status, both) against what the test knows it
/// published: each `total` and `total_pages` as expected.
async fn totals_agree(app: &TestApp, truth: &BTreeMap<String, (String, &'static str)>) {
    let users: std::collections::BTreeSet<&String> = truth.values().map(|(user, _)| user).collect();
    let mut filters: Vec<(Option<&str>, Option<&str>)> = vec![(None, None)];
    filters.extend(STATUSES.iter().map(|s| (None, Some(*s))));
    for user in &users {
        filters.push((Some(user.as_str()), None));
        filters.extend(STATUSES.iter().map(|s| (Some(user.as_str()), Some(*s))));
    }
    for (user, status) in filters {
        let expected = truth
            .values()
            .filter(|(u, s)| user.is_none_or(|user| user == u) && status.is_none_or(|st| st == *s))
            .count() as u64;
        let mut query = vec!["page_size=7".to_owned()];
        query.extend(user.map(|u| format!("user_id={u}")));
        query.extend(status.map(|s| format!("status={s}")));
        let page = app
            .http
            .get(&format!("/queries/orders?{}", query.join("&")))
            .await;
        assert_eq!(page.status, 200, "{:#}", page.body);
        assert_eq!(
            (
                page.body["total"].as_u64(),
                page.body["total_pages"].as_u64()
            ),
            (Some(expected), Some(expected.div_ceil(7))),
            "total of user {user:?}, status {status:?}"
        );
    }
    let mut conn = app.db.connect().await;
    assert_eq!(crate::miscounted(&mut conn).await, "[]");
}

/// Publishes the next status of `id` (version `version`), as the write side would.
async fn advance(app: &TestApp, id: &str, version: i64, to: OrderStatus) {
    let id: OrderId = id.parse().unwrap();
    let event = match to {
        OrderStatus::Confirmed => NewEvent::new(
            events::ORDER_CONFIRMED,
            id,
            version,
            &events::OrderConfirmed {
                payment_id: PaymentId::generate(),
                amount: kernel::Money::parse("12.50").unwrap(),
            },
        ),
        OrderStatus::Shipped => NewEvent::new(
            events::ORDER_SHIPPED,
            id,
            version,
            &events::StatusChanged {},
        ),
        OrderStatus::Cancelled => NewEvent::new(
            events::ORDER_CANCELLED,
            id,
            version,
            &events::OrderCancelled {
                reason: "no".to_owned(),
                previous_status: OrderStatus::Pending,
            },
        ),
        other => panic!("not used here: {other:?}"),
    };
    app.publish(event).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_are_exact_under_every_filter_through_changes_redeliveries_and_rebuilds() {
    let app = spawn_app().await;
    let users: Vec<String> = (0..3).map(|_| app.shop().0).collect();
    let product = app.shop().1;
    // id -> (user, status), and each order's version, as published.
    let mut truth = BTreeMap::new();
    let mut versions = BTreeMap::new();
    for i in 0..24 {
        let user = &users[i % 3];
        let id = app.placed(user, &product, 1).await;
        truth.insert(id.clone(), (user.clone(), "pending"));
        versions.insert(id, 1);
    }
    let ids: Vec<String> = truth.keys().cloned().collect();
    for (i, id) in ids.iter().enumerate() {
        let step = match i % 4 {
            0 => Some((OrderStatus::Confirmed, "confirmed")),
            1 => Some((OrderStatus::Cancelled, "cancelled")),
            _ => None,
        };
        if let Some((status, name)) = step {
            advance(&app, id, 2, status).await;
            truth.get_mut(id).unwrap().1 = name;
            versions.insert(id.clone(), 2);
        }
    }
    // Some confirmed orders ship; a status change delivered again, and a stale one, count
    // for nothing (the projection's version guard).
    for id in ids.iter().step_by(8) {
        advance(&app, id, 3, OrderStatus::Shipped).await;
        advance(&app, id, 3, OrderStatus::Shipped).await;
        advance(&app, id, 2, OrderStatus::Cancelled).await;
        truth.get_mut(id).unwrap().1 = "shipped";
        versions.insert(id.clone(), 3);
    }
    // The log is applied in order: once an order placed last shows, everything before has.
    let last = app.placed(&users[0], &product, 1).await;
    truth.insert(last.clone(), (users[0].clone(), "pending"));
    app.view(&last, 1).await;
    for (id, version) in &versions {
        app.view(id, *version).await;
    }
    totals_agree(&app, &truth).await;

    let generation = app.side.rebuild().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while app
        .db
        .scalar("SELECT id::bigint AS n FROM orders_read.generations WHERE state = 'live'")
        .await
        != i64::from(generation)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the rebuild never went live"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    totals_agree(&app, &truth).await;
    app.side.delete_retired_generations().await.unwrap();
    assert_eq!(
        app.db
            .scalar(&format!(
                "SELECT count(*) AS n FROM orders_read.order_counts WHERE generation <> {generation}"
            ))
            .await,
        0,
        "the retired generation's counts went with its orders"
    );
    totals_agree(&app, &truth).await;
}

/// Orders written straight into the live generation (the triggers count them as they
/// count the projection's writes): 100,000 of one user in five statuses, and one of another.
const MANY: &str = "INSERT INTO orders_read.orders (generation, id, user_id, user_name, user_email, \
       item_count, total, status, cancel_reason, created_at, updated_at, version) \
     SELECT 1, gen_random_uuid(), $1, 'Many', 'many@example.com', 1, 1.00, \
       (ARRAY['pending', 'confirmed', 'shipped', 'delivered', 'cancelled'])[1 + i % 5], NULL, \
       now() - i * interval '1 second', now(), 1 \
     FROM generate_series(1, 100000) AS i";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_total_over_a_hundred_thousand_orders_reads_a_few_counted_rows() {
    let app = spawn_app().await;
    let (many, product) = app.shop();
    let other = app.shop().0;
    let one = app.placed(&other, &product, 1).await;
    app.view(&one, 1).await;
    let mut conn = app.db.connect().await;
    diesel::sql_query(MANY)
        .bind::<SqlUuid, _>(many.parse::<uuid::Uuid>().unwrap())
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query("ANALYZE orders_read.orders")
        .execute(&mut conn)
        .await
        .unwrap();

    for (query, total) in [
        (String::new(), 100_001),
        (format!("user_id={many}"), 100_000),
        (format!("user_id={other}"), 1),
        ("status=pending".to_owned(), 20_001),
        (format!("user_id={many}&status=delivered"), 20_000),
        (format!("user_id={other}&status=shipped"), 0),
    ] {
        let page = app.http.get(&format!("/queries/orders?{query}")).await;
        assert_eq!(page.status, 200, "{:#}", page.body);
        assert_eq!(page.body["total"], total, "?{query}");
    }
    assert_eq!(crate::miscounted(&mut conn).await, "[]");

    // What the total costs: the counts' rows and the live generation's, never the orders.
    for (user, status) in [(None, None), (Some(many.clone()), Some("pending"))] {
        let plan: Plan = diesel::sql_query(Plan::explain(orders_read::LIST_TOTAL))
            .bind::<Nullable<SqlUuid>, _>(user.map(|u| u.parse::<uuid::Uuid>().unwrap()))
            .bind::<Nullable<Text>, _>(status)
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(plan.relations(), ["generations", "order_counts"], "{plan}");
        let touched = plan.buffers();
        assert!(touched < 20, "touched {touched} buffers: {plan}");
    }
}
