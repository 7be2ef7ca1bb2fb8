//! Refunds: the captured payment goes back once, whatever is repeated.

use kernel::OrderId;
use payments_api::{PaymentError, PaymentStatus, tokens};
use serde_json::json;

use crate::{money, spawn_app};

#[tokio::test]
async fn a_captured_payment_is_refunded_once() {
    let app = spawn_app().await;
    let order = OrderId::generate();
    let paid = app
        .api
        .charge(order, money("19.99"), tokens::VISA)
        .await
        .unwrap();

    let refunded = app.api.refund(order).await.unwrap().expect("a payment");
    assert_eq!(refunded.id, paid.id);
    assert_eq!(refunded.status, PaymentStatus::Refunded);
    assert_eq!(refunded.amount, paid.amount);
    assert_eq!(refunded.created_at, paid.created_at);
    assert!(refunded.updated_at >= paid.updated_at);
    assert_eq!(app.gateway.refunds(), 1);
    let payload = json!({"payment_id": paid.id, "order_id": order, "amount": "19.99"});
    assert_eq!(
        app.events_with_the_row(paid.id, "payment.refunded", 2, &payload)
            .await,
        1,
        "payment.refunded, version 2, in the refund's transaction"
    );

    let again = app.api.refund(order).await.unwrap().expect("a payment");
    assert_eq!(again, refunded, "unchanged");
    assert_eq!(app.gateway.refunds(), 1, "the gateway refunded once");
    assert_eq!(app.events().await, 2, "captured and refunded, nothing more");
    assert_eq!(app.api.get(paid.id).await.unwrap(), refunded);

    let charged_again = app
        .api
        .charge(order, money("19.99"), tokens::VISA)
        .await
        .unwrap();
    assert_eq!(
        charged_again, refunded,
        "a refunded order is not charged again"
    );
    assert_eq!(app.gateway.charges(), 1);
}

#[tokio::test]
async fn nothing_to_refund_is_none() {
    let app = spawn_app().await;
    assert_eq!(app.api.refund(OrderId::generate()).await.unwrap(), None);

    let declined_only = OrderId::generate();
    assert!(matches!(
        app.api
            .charge(declined_only, money("1"), tokens::DECLINED)
            .await,
        Err(PaymentError::Declined { .. })
    ));
    assert_eq!(app.api.refund(declined_only).await.unwrap(), None);
    assert_eq!(
        app.api.for_order(declined_only).await.unwrap()[0].status,
        PaymentStatus::Declined,
        "a declined payment stays declined"
    );
    assert_eq!(app.gateway.refunds(), 0);
    assert_eq!(app.events().await, 1, "only the decline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refunds_refund_once() {
    let app = spawn_app().await;
    let order = OrderId::generate();
    let paid = app
        .api
        .charge(order, money("8.00"), tokens::VISA)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let api = app.api.clone();
            tokio::spawn(async move { api.refund(order).await })
        })
        .collect();
    for task in tasks {
        let refunded = task.await.unwrap().unwrap().expect("a payment");
        assert_eq!(
            (refunded.id, refunded.status),
            (paid.id, PaymentStatus::Refunded)
        );
    }
    assert_eq!(app.gateway.refunds(), 1);
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM payments.events WHERE event_type = 'payment.refunded'"
        )
        .await,
        1
    );
}
