//! Renames: a user's or a product's new name reaches every order that names it, and costs
//! the projection one row however many orders name it, so no event's transaction grows
//! with the orders of a user or a product (a long transaction holds back every reader of
//! every event log).

use kernel::{Money, NewEvent, OrderId, ProductId, UserId};
use orders_api::events;
use products_api::events as product_events;
use serde_json::Value;
use users_api::events as user_events;

use crate::{PRODUCT_LOG, TestApp, USER_LOG, publish, spawn_app};

/// Orders naming the renamed user and product: more than a page of the list.
const ORDERS: usize = 250;

/// A checksum of where every order and item row of the read model physically is and which
/// transaction wrote it (`ctid`, `xmin`): any rewrite of a row changes it.
const ROW_VERSIONS: &str = "SELECT \
       (SELECT coalesce(sum(hashtext(ctid::text || xmin::text)), 0) FROM orders_read.orders) \
       + (SELECT coalesce(sum(hashtext(ctid::text || xmin::text)), 0) FROM orders_read.order_items) \
       AS n";

fn user_event(kind: &'static str, id: UserId, version: i64, name: &str) -> NewEvent {
    let payload = user_events::UserUpdated {
        email: format!("{}@example.com", name.to_lowercase().replace(' ', ".")),
        name: name.to_owned(),
        active: true,
    };
    NewEvent::new(kind, id, version, &payload)
}

fn product_event(kind: &'static str, id: ProductId, version: i64, name: &str) -> NewEvent {
    let created = kind == product_events::PRODUCT_CREATED;
    let (event_type, payload) = crate::projection::product_payload(created, name);
    NewEvent {
        event_type,
        aggregate_id: id.into(),
        aggregate_version: version,
        schema_version: 1,
        payload,
    }
}

/// Publishes `count` orders of `user` for `product` in one transaction, placed under the
/// names "Placed As" and "Lamp as placed"; their ids.
async fn place_many(app: &TestApp, user: UserId, product: ProductId, count: usize) -> Vec<String> {
    let price = Money::parse("12.50").unwrap();
    let mut ids = Vec::new();
    let mut created = Vec::new();
    for _ in 0..count {
        let id = OrderId::generate();
        let order = events::OrderCreated {
            user_id: user,
            user_name: "Placed As".to_owned(),
            user_email: "placed@example.com".to_owned(),
            items: vec![
                events::OrderLine::new(product, "Lamp as placed".to_owned(), 1, price)
                    .expect("a line"),
            ],
            total: price,
        };
        created.push(NewEvent::new(events::ORDER_CREATED, id, 1, &order));
        ids.push(id.to_string());
    }
    publish(&app.log, &crate::ORDER_LOG, &created).await;
    ids
}

/// Every order of `user`, page by page, as the list query answers them.
async fn orders_of(app: &TestApp, user: UserId) -> Vec<Value> {
    let mut orders = Vec::new();
    for page in 1.. {
        let answer = app
            .http
            .get(&format!(
                "/queries/orders?user_id={user}&page={page}&page_size=100"
            ))
            .await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        let rows = answer.body["orders"].as_array().unwrap().clone();
        if rows.is_empty() {
            break;
        }
        orders.extend(rows);
    }
    orders
}

/// Polls the list until every order of `user` shows `user_name` and `product_name`.
async fn until_every_order_says(app: &TestApp, user: UserId, user_name: &str, product_name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let orders = orders_of(app, user).await;
        let stale: Vec<&Value> = orders
            .iter()
            .filter(|o| {
                o["user_name"] != user_name || o["items"][0]["product_name"] != product_name
            })
            .collect();
        if orders.len() == ORDERS && stale.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} orders never said {user_name:?} / {product_name:?}, e.g. {:#}",
            stale.len(),
            orders.len(),
            stale.first().copied().unwrap_or(&Value::Null)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_reaches_every_order_and_rewrites_none() {
    let app = spawn_app().await;
    let (user, product) = (UserId::generate(), ProductId::generate());
    publish(
        &app.users,
        &USER_LOG,
        &[user_event(user_events::USER_REGISTERED, user, 1, "Ada")],
    )
    .await;
    publish(
        &app.products,
        &PRODUCT_LOG,
        &[product_event(
            product_events::PRODUCT_CREATED,
            product,
            1,
            "Lamp",
        )],
    )
    .await;
    let ids = place_many(&app, user, product, ORDERS).await;
    // The names seen in events win over the ones the orders were placed with.
    until_every_order_says(&app, user, "Ada", "Lamp").await;
    let before = app.db.scalar(ROW_VERSIONS).await;

    publish(
        &app.users,
        &USER_LOG,
        &[user_event(user_events::USER_UPDATED, user, 2, "Ada King")],
    )
    .await;
    publish(
        &app.products,
        &PRODUCT_LOG,
        &[product_event(
            product_events::PRODUCT_UPDATED,
            product,
            2,
            "Desk Lamp",
        )],
    )
    .await;
    until_every_order_says(&app, user, "Ada King", "Desk Lamp").await;
    let one = app.view(&ids[ORDERS / 2], 1).await;
    assert_eq!(
        (
            one["user_name"].as_str(),
            one["user_email"].as_str(),
            one["items"][0]["product_name"].as_str()
        ),
        (
            Some("Ada King"),
            Some("ada.king@example.com"),
            Some("Desk Lamp")
        )
    );
    assert_eq!(
        app.db.scalar(ROW_VERSIONS).await,
        before,
        "a rename rewrote order rows: its transaction grows with the orders that name it"
    );

    // An older version delivered late changes nothing; the next one wins again.
    publish(
        &app.products,
        &PRODUCT_LOG,
        &[
            product_event(product_events::PRODUCT_UPDATED, product, 2, "Stale Lamp"),
            product_event(product_events::PRODUCT_UPDATED, product, 3, "Floor Lamp"),
        ],
    )
    .await;
    until_every_order_says(&app, user, "Ada King", "Floor Lamp").await;
}
