//! A rebuild and the events it parks: a dead letter of the rebuild is the live
//! projection's once the rebuilt generation is live, so operators see it and can retry it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventlog::{PgEventSource, Position, StepOutcome};
use kernel::{Money, NewEvent, OrderId, UserId};
use orders_api::{OrderStatus, events};
use orders_read::{OrderReadSide, PROJECTION, Sources};

use crate::{ORDER_LOG, Silent};

fn created(id: OrderId) -> NewEvent {
    let price = Money::parse("4.00").unwrap();
    let created = events::OrderCreated {
        user_id: UserId::generate(),
        user_name: "Buyer".to_owned(),
        user_email: "buyer@example.com".to_owned(),
        items: vec![
            events::OrderLine::new(kernel::ProductId::generate(), "Lamp".to_owned(), 1, price)
                .expect("a line"),
        ],
        total: price,
    };
    NewEvent::new(events::ORDER_CREATED, id, 1, &created)
}

fn cancelled(id: OrderId) -> NewEvent {
    let cancelled = events::OrderCancelled {
        reason: "changed my mind".to_owned(),
        previous_status: OrderStatus::Pending,
    };
    NewEvent::new(events::ORDER_CANCELLED, id, 2, &cancelled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_parked_by_a_rebuild_is_the_live_projections_after_the_switch() {
    let db = kernel::testing::database(&[ORDER_LOG, orders_read::SCHEMA]).await;
    let log = kernel::db::pool(&db.url, &ORDER_LOG, Default::default()).unwrap();
    let read = kernel::db::pool(&db.url, &orders_read::SCHEMA, Default::default()).unwrap();
    let orders = Arc::new(PgEventSource {
        schema: ORDER_LOG.name,
        pool: log.clone(),
    });
    let side = OrderReadSide::new(
        read.clone(),
        Sources {
            orders: orders.clone(),
            users: Arc::new(Silent("users")),
            products: Arc::new(Silent("products")),
        },
    );
    // No live delivery runs (its checkpoints are registered, as a dispatcher would): only
    // the rebuild applies what is in the log. The cancellation of an order the log never
    // created fails every time, so the rebuild parks it.
    for subscription in side.subscriptions() {
        subscription.register().await.unwrap();
    }
    let (placed, orphan) = (OrderId::generate(), OrderId::generate());
    {
        let mut conn = kernel::db::connect(&log).await.unwrap();
        eventlog::append(
            &mut conn,
            ORDER_LOG.name,
            &[created(placed), cancelled(orphan)],
        )
        .await
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while eventlog::EventSource::read(&*orders, Position::default(), 10)
        .await
        .unwrap()
        .len()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the events never became readable"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let generation = side.rebuild().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while side.rebuild_progress().await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the rebuild never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let live = "SELECT id::bigint AS n FROM orders_read.generations WHERE state = 'live'";
    assert_eq!(
        db.scalar(live).await,
        i64::from(generation),
        "the rebuild went live"
    );

    let letters = eventlog::dead_letters(&read, orders_read::SCHEMA.name)
        .await
        .unwrap();
    let owners: Vec<&str> = letters.iter().map(|l| l.subscriber.as_str()).collect();
    assert_eq!(
        owners,
        [PROJECTION],
        "the parked event belongs to the live projection: {letters:?}"
    );
    let subscription = side
        .subscriptions()
        .into_iter()
        .find(|s| s.source.name() == ORDER_LOG.name)
        .unwrap();
    assert_eq!(
        subscription.status().await.unwrap().dead_letters,
        1,
        "and operators see it"
    );

    // Once the order exists, retrying the letter brings the cancellation into the live
    // read model.
    {
        let mut conn = kernel::db::connect(&log).await.unwrap();
        eventlog::append(&mut conn, ORDER_LOG.name, &[created(orphan)])
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let orphans = format!("SELECT count(*) AS n FROM orders_read.orders WHERE id = '{orphan}'");
    while db.scalar(&orphans).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the live projection never caught up"
        );
        if subscription.step(100).await.unwrap() == StepOutcome::Idle {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(subscription.retry_dead_letter(letters[0].id).await.unwrap());
    let status = format!(
        "SELECT count(*) AS n FROM orders_read.orders o JOIN orders_read.generations g \
         ON g.id = o.generation AND g.state = 'live' WHERE o.id = '{orphan}' AND o.status = 'cancelled'"
    );
    assert_eq!(
        db.scalar(&status).await,
        1,
        "the retried cancellation is live"
    );
    assert!(
        eventlog::dead_letters(&read, orders_read::SCHEMA.name)
            .await
            .unwrap()
            .is_empty()
    );
}
