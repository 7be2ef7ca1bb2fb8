//! The sweeper: pending orders expire and release their stock, old idempotency keys are
//! forgotten, and it never touches an order that moved on meanwhile.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::{gates, spawn_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_orders_expire_and_release_their_stock() {
    let app = spawn_with(orders::Settings {
        order_expiry: Duration::from_millis(300),
        sweep_every: Duration::from_secs(3600),
        confirm_fence: Duration::from_secs(30),
        idempotency_ttl: Duration::from_secs(86_400),
        max_pending_orders: 20,
        faults: None,
    })
    .await;
    let (user, product) = app.shop(10);
    let stays = app.placed(&user, &product, 1).await;
    app.command(&stays, "confirm", json!({"payment_token": "tok_visa"}))
        .await;
    let expires = app.placed(&user, &product, 4).await;
    app.module.sweep().await.unwrap();
    assert_eq!(
        app.view(&expires, 1).await["status"],
        "pending",
        "not yet expired"
    );
    tokio::time::sleep(Duration::from_millis(400)).await; // let the order age past ORDER_EXPIRY
    app.module.sweep().await.unwrap();
    let view = app.view(&expires, 2).await;
    assert_eq!(
        (view["status"].as_str(), view["cancel_reason"].as_str()),
        (Some("cancelled"), Some("expired"))
    );
    assert_eq!(
        app.view(&stays, 2).await["status"],
        "confirmed",
        "confirmed orders never expire"
    );
    assert_eq!(app.stock(&product).await, (9, 0));
}

/// An order confirmed after a sweep listed it as expired stays confirmed: expiry cancels
/// only an order still pending when it cancels it, never a paid one (confirmed ->
/// cancelled is legal, so the listing alone is no proof).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_confirmed_after_the_sweep_listed_it_is_not_expired() {
    let (hook, [mut listed]) = gates(["before_expire"]);
    let app = Arc::new(
        spawn_with(orders::Settings {
            order_expiry: Duration::ZERO,
            sweep_every: Duration::from_secs(3600),
            confirm_fence: Duration::from_secs(30),
            idempotency_ttl: Duration::from_secs(86_400),
            max_pending_orders: 20,
            faults: Some(hook),
        })
        .await,
    );
    let (user, product) = app.shop(10);
    let id = app.placed(&user, &product, 2).await;
    let sweep = tokio::spawn({
        let app = app.clone();
        async move { app.module.sweep().await }
    });
    listed.reached().await;
    let confirmed = app
        .command(&id, "confirm", json!({"payment_token": "tok_visa"}))
        .await;
    assert_eq!(confirmed.status, 202, "{:#}", confirmed.body);
    listed.open();
    sweep.await.unwrap().unwrap();

    assert_eq!(app.payments.refunds(), 0, "the payment is not refunded");
    let cancelled = app
        .db
        .scalar("SELECT count(*) AS n FROM orders.events WHERE event_type = 'order.cancelled'")
        .await;
    assert_eq!(cancelled, 0, "no order.cancelled published");
    let still_confirmed = app
        .db
        .scalar(&format!(
            "SELECT count(*) AS n FROM orders.orders WHERE id = '{id}' AND status = 'confirmed' AND version = 2"
        ))
        .await;
    assert_eq!(still_confirmed, 1, "the order stays confirmed at version 2");
    assert_eq!(app.stock(&product).await, (8, 0), "the stock stays sold");
    assert_eq!(app.view(&id, 2).await["status"], "confirmed");
}

/// An `Idempotency-Key` is remembered for `IDEMPOTENCY_TTL`, then forgotten: a repeat
/// places a new order, and the sweeper deletes what is left of old keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_is_forgotten_after_its_ttl() {
    let app = spawn_with(orders::Settings {
        idempotency_ttl: Duration::from_secs(3600),
        ..crate::spawn_settings()
    })
    .await;
    let (user, product) = app.shop(10);
    let body = json!({"user_id": user, "items": [{"product_id": product, "quantity": 1}]});
    let place = |key: &'static str| {
        let (http, body) = (app.http.clone(), body.clone());
        async move {
            let (status, answer) = crate::place_with_key(&http, key, &body).await;
            assert_eq!(status, 202);
            answer["order_id"].as_str().unwrap().to_owned()
        }
    };
    let first = place("remembered").await;
    assert_eq!(
        place("remembered").await,
        first,
        "within the TTL: the same answer"
    );
    let age = |hours: i64| {
        format!("UPDATE orders.idempotency_keys SET created_at = now() - interval '{hours} hours'")
    };
    let mut conn = app.db.connect().await;
    use diesel_async::RunQueryDsl;
    diesel::sql_query(age(2)).execute(&mut conn).await.unwrap();
    let again = place("remembered").await;
    assert_ne!(
        again, first,
        "past the TTL the key is forgotten: a new order"
    );

    place("another").await;
    diesel::sql_query(age(2)).execute(&mut conn).await.unwrap();
    place("fresh").await;
    app.module.sweep().await.unwrap();
    let keys = app
        .db
        .scalar("SELECT count(*) AS n FROM orders.idempotency_keys")
        .await;
    assert_eq!(
        keys, 1,
        "the sweep deleted the expired keys and kept the fresh one"
    );
}
