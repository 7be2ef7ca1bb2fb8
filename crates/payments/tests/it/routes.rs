//! `/payments` over HTTP: payments as JSON, every failure as problem+json.

use kernel::{OrderId, PaymentId};
use payments_api::tokens;
use serde_json::json;

use crate::{money, spawn_app};

#[tokio::test]
async fn get_a_payment() {
    let app = spawn_app().await;
    let order = OrderId::generate();
    let payment = app
        .api
        .charge(order, money("12.5"), tokens::VISA)
        .await
        .unwrap();

    let answer = app.http.get(&format!("/payments/{}", payment.id)).await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let body = &answer.body;
    assert_eq!(body["id"], payment.id.to_string());
    assert_eq!(body["order_id"], order.to_string());
    assert_eq!(
        body["amount"], "12.50",
        "money is a string with two decimals"
    );
    assert_eq!(body["status"], "captured");
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "amount",
            "created_at",
            "id",
            "order_id",
            "status",
            "updated_at"
        ]
    );
    assert_eq!(*body, serde_json::to_value(&payment).unwrap());

    app.api.refund(order).await.unwrap();
    let refunded = app.http.get(&format!("/payments/{}", payment.id)).await;
    assert_eq!(refunded.body["status"], "refunded");
}

#[tokio::test]
async fn get_an_unknown_or_malformed_id() {
    let app = spawn_app().await;
    let unknown = PaymentId::generate();
    let answer = app.http.get(&format!("/payments/{unknown}")).await;
    let body = answer.assert_problem(404, "payment_not_found");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains(&unknown.to_string())
    );
    for bad in ["not-a-uuid", "123", "0190b3c4-0000-7000-8000-00000000000g"] {
        app.http
            .get(&format!("/payments/{bad}"))
            .await
            .assert_problem(400, "invalid_path");
    }
}

#[tokio::test]
async fn list_an_orders_payments() {
    let app = spawn_app().await;
    let order = OrderId::generate();
    app.api
        .charge(order, money("3"), tokens::DECLINED)
        .await
        .unwrap_err();
    let paid = app
        .api
        .charge(order, money("3"), tokens::VISA)
        .await
        .unwrap();
    app.api
        .charge(OrderId::generate(), money("4"), tokens::VISA)
        .await
        .unwrap();

    let answer = app.http.get(&format!("/payments?order_id={order}")).await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    let payments = answer.body["payments"].as_array().unwrap();
    let statuses: Vec<&str> = payments
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["declined", "captured"],
        "oldest first, this order only"
    );
    assert_eq!(payments[1], serde_json::to_value(&paid).unwrap());

    let unknown = app
        .http
        .get(&format!("/payments?order_id={}", OrderId::generate()))
        .await;
    assert_eq!(unknown.status, 200);
    assert_eq!(unknown.body, json!({"payments": []}));
}

#[tokio::test]
async fn list_rejects_a_missing_malformed_or_unknown_query_parameter() {
    let app = spawn_app().await;
    let order = OrderId::generate();
    let bad = [
        "/payments".to_owned(),
        "/payments?order_id=".to_owned(),
        "/payments?order_id=nope".to_owned(),
        "/payments?orderid=0190b3c4-0000-7000-8000-000000000000".to_owned(),
        format!("/payments?order_id={order}&page=1"),
        format!("/payments?order_id={order}&order_id={order}"),
    ];
    for path in &bad {
        let answer = app.http.get(path).await;
        assert_eq!(answer.status, 400, "{path}: {:#}", answer.body);
        answer.assert_problem(400, "invalid_query");
    }
}

#[tokio::test]
async fn payments_are_read_only_over_http() {
    let app = spawn_app().await;
    let id = PaymentId::generate();
    app.http
        .post("/payments", json!({"order_id": OrderId::generate()}))
        .await
        .assert_problem(405, "method_not_allowed");
    app.http
        .patch(&format!("/payments/{id}"), json!({"status": "refunded"}))
        .await
        .assert_problem(405, "method_not_allowed");
    assert_eq!(app.payments().await, 0);
}

/// An order's list is bounded: its newest 100 payments, oldest first, the captured one
/// among them however many declined attempts came before.
#[tokio::test]
async fn an_orders_list_holds_its_newest_hundred() {
    let app = spawn_app().await;
    let order = OrderId::generate();
    for _ in 0..105 {
        app.api
            .charge(order, money("2"), tokens::DECLINED)
            .await
            .unwrap_err();
    }
    let paid = app
        .api
        .charge(order, money("2"), tokens::VISA)
        .await
        .unwrap();
    let answer = app.http.get(&format!("/payments?order_id={order}")).await;
    let payments = answer.body["payments"].as_array().unwrap();
    assert_eq!(payments.len(), 100);
    assert_eq!(
        payments[99]["id"],
        paid.id.to_string(),
        "the captured one is last"
    );
    assert!(payments[..99].iter().all(|p| p["status"] == "declined"));
    let all = app
        .db
        .scalar("SELECT count(*) AS n FROM payments.payments")
        .await;
    assert_eq!(all, 106, "left out of the list, not deleted");
}
