//! A log that holds `order.created` at version 1 (lines without a subtotal, as written
//! before version 2) and at version 2: the live projection reads both, and so does a
//! rebuild that replays the whole log; without the upcaster, the version 1 event would
//! fail and be parked. (The read model computes each line's subtotal itself; the
//! upcaster's subtotals are unit-tested in `orders-api`.)

use kernel::{Money, NewEvent, OrderId, Payload, ProductId, UserId};
use orders_api::events;
use serde_json::json;

use crate::{ORDER_LOG, publish, spawn_app};

/// `order.created` as version 1 wrote it: the same fields, no `subtotal` on a line.
fn created_v1(id: OrderId, user: UserId, product: ProductId) -> NewEvent {
    NewEvent {
        event_type: events::ORDER_CREATED,
        aggregate_id: id.into(),
        aggregate_version: 1,
        schema_version: 1,
        payload: json!({
            "user_id": user, "user_name": "Old Buyer", "user_email": "old@example.com",
            "items": [{"product_id": product, "product_name": "Lamp", "quantity": 3,
                       "price": "12.50"}],
            "total": "37.50",
        }),
    }
}

fn created_v2(id: OrderId, user: UserId, product: ProductId) -> NewEvent {
    let price = Money::parse("4.25").unwrap();
    let line = events::OrderLine::new(product, "Shade".to_owned(), 2, price).unwrap();
    let created = events::OrderCreated {
        user_id: user,
        user_name: "New Buyer".to_owned(),
        user_email: "new@example.com".to_owned(),
        items: vec![line],
        total: Money::parse("8.50").unwrap(),
    };
    NewEvent::new(events::ORDER_CREATED, id, 1, &created)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_created_at_version_1_and_2_read_alike_live_and_after_a_rebuild() {
    assert_eq!(events::OrderCreated::SCHEMA_VERSION, 2);
    let app = spawn_app().await;
    let (old, new) = (OrderId::generate(), OrderId::generate());
    let (user, product) = (UserId::generate(), ProductId::generate());
    publish(
        &app.log,
        &ORDER_LOG,
        &[
            created_v1(old, user, product),
            created_v2(new, user, product),
        ],
    )
    .await;
    let versions = "SELECT count(DISTINCT schema_version) AS n FROM order_events.events";
    assert_eq!(
        app.db.scalar(versions).await,
        2,
        "the log holds both versions"
    );

    let expect = |view: &serde_json::Value, subtotal: &str, total: &str| {
        assert_eq!(view["items"][0]["subtotal"], subtotal, "{view:#}");
        assert_eq!(view["total"], total, "{view:#}");
        assert_eq!(view["status"], "pending", "{view:#}");
    };
    expect(&app.view(&old.to_string(), 1).await, "37.50", "37.50");
    expect(&app.view(&new.to_string(), 1).await, "8.50", "8.50");

    app.side.rebuild().await.unwrap();
    expect(&app.view(&old.to_string(), 1).await, "37.50", "37.50");
    expect(&app.view(&new.to_string(), 1).await, "8.50", "8.50");
    let parked = app
        .db
        .scalar("SELECT count(*) AS n FROM orders_read.dead_letters")
        .await;
    assert_eq!(parked, 0, "no event was parked");
}
