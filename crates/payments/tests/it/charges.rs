//! Charging: the token rules, what each outcome writes, and at most one captured payment
//! per order, even under concurrency.

use std::sync::Arc;

use async_trait::async_trait;
use kernel::{Money, OrderId, PaymentId};
use payments::{ChargeState, GatewayError, GatewayReceipt, PaymentGateway};
use payments_api::{PaymentApi, PaymentError, PaymentStatus, tokens};
use serde_json::json;

use crate::{money, spawn_app};

#[tokio::test]
async fn a_visa_charge_captures_and_publishes_in_the_same_transaction() {
    let app = spawn_app().await;
    let order = OrderId::generate();
    let payment = app
        .api
        .charge(order, money("12.34"), tokens::VISA)
        .await
        .unwrap();
    assert_eq!(payment.order_id, order);
    assert_eq!(payment.amount.to_string(), "12.34");
    assert_eq!(payment.status, PaymentStatus::Captured);
    // Recorded pending first, settled captured after.
    assert!(payment.created_at <= payment.updated_at);
    assert_eq!(app.gateway.charges(), 1);
    assert_eq!(app.api.get(payment.id).await.unwrap(), payment);

    let payload = json!({"payment_id": payment.id, "order_id": order, "amount": "12.34"});
    assert_eq!(
        app.events_with_the_row(payment.id, "payment.captured", 1, &payload)
            .await,
        1
    );
    assert_eq!(app.events().await, 1);
    let reference = app
        .count(&format!(
            "SELECT count(*) AS n FROM payments.payments WHERE id = '{}' \
             AND gateway_reference IS NOT NULL AND version = 1",
            payment.id
        ))
        .await;
    assert_eq!(reference, 1, "the gateway's reference is kept");
}

#[tokio::test]
async fn a_declined_card_is_recorded_and_published() {
    let app = spawn_app().await;
    let order = OrderId::generate();
    let err = app
        .api
        .charge(order, money("5"), tokens::DECLINED)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PaymentError::Declined { order_id } if order_id == order),
        "{err:?}"
    );
    let payments = app.api.for_order(order).await.unwrap();
    assert_eq!(payments.len(), 1);
    let declined = &payments[0];
    assert_eq!(
        (declined.status, declined.amount.to_string()),
        (PaymentStatus::Declined, "5.00".to_owned())
    );
    let payload = json!({
        "payment_id": declined.id, "order_id": order, "amount": "5.00", "reason": "card declined"
    });
    assert_eq!(
        app.events_with_the_row(declined.id, "payment.declined", 1, &payload)
            .await,
        1
    );
    assert_eq!(app.events().await, 1);
    assert_eq!(app.gateway.charges(), 0);
}

#[tokio::test]
async fn a_gateway_failure_is_recorded_failed_and_an_unknown_token_writes_nothing() {
    let app = spawn_app().await;
    let order = OrderId::generate();
    let err = app
        .api
        .charge(order, money("5"), tokens::GATEWAY_ERROR)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PaymentError::GatewayUnavailable(_)),
        "{err:?}"
    );
    let failed = app.api.for_order(order).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].status, PaymentStatus::Failed);
    let payload = json!({
        "payment_id": failed[0].id, "order_id": order, "amount": "5.00",
        "reason": "simulated gateway error"
    });
    assert_eq!(
        app.events_with_the_row(failed[0].id, "payment.failed", 1, &payload)
            .await,
        1,
        "payment.failed, version 1, in the settling transaction"
    );
    for token in ["tok_mastercard", ""] {
        let err = app.api.charge(order, money("5"), token).await.unwrap_err();
        assert!(
            matches!(err, PaymentError::InvalidToken { .. }),
            "{token:?}: {err:?}"
        );
        assert_eq!(
            (app.payments().await, app.events().await),
            (1, 1),
            "{token:?} leaves nothing recorded"
        );
    }
    assert_eq!(app.gateway.charges(), 0);
    // A gateway failure is safe to retry.
    let paid = app
        .api
        .charge(order, money("5"), tokens::VISA)
        .await
        .unwrap();
    let statuses: Vec<PaymentStatus> = app
        .api
        .for_order(order)
        .await
        .unwrap()
        .iter()
        .map(|p| p.status)
        .collect();
    assert_eq!(statuses, [PaymentStatus::Failed, PaymentStatus::Captured]);
    assert_eq!(app.api.get(paid.id).await.unwrap(), paid);
}

#[tokio::test]
async fn amounts_must_be_positive_and_fit() {
    let app = spawn_app().await;
    for amount in [Money::ZERO, money("10000000000.00")] {
        let err = app
            .api
            .charge(OrderId::generate(), amount, tokens::VISA)
            .await
            .unwrap_err();
        match err {
            PaymentError::Invalid(errors) => {
                assert_eq!(errors.len(), 1);
                assert_eq!(errors[0].field, "amount", "{amount}");
            }
            other => panic!("{amount}: expected Invalid, got {other:?}"),
        }
    }
    assert_eq!(app.gateway.charges(), 0);
    assert_eq!(app.payments().await, 0);
    let largest = app
        .api
        .charge(OrderId::generate(), money("9999999999.99"), tokens::VISA)
        .await
        .unwrap();
    assert_eq!(largest.amount.to_string(), "9999999999.99");
}

#[tokio::test]
async fn a_paid_order_is_never_charged_again() {
    let app = spawn_app().await;
    let order = OrderId::generate();
    let first = app
        .api
        .charge(order, money("20"), tokens::VISA)
        .await
        .unwrap();
    for token in [
        tokens::VISA,
        tokens::DECLINED,
        tokens::GATEWAY_ERROR,
        "tok_x",
    ] {
        let again = app.api.charge(order, money("20"), token).await;
        assert_eq!(again.unwrap(), first, "{token}");
    }
    assert_eq!(app.gateway.charges(), 1);
    assert_eq!((app.payments().await, app.events().await), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn six_concurrent_charges_of_one_order_charge_once() {
    let app = spawn_app().await;
    let order = OrderId::generate();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let api = app.api.clone();
            tokio::spawn(async move { api.charge(order, money("42.00"), tokens::VISA).await })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        let payment = task
            .await
            .unwrap()
            .expect("every charge answers the payment");
        assert_eq!(payment.status, PaymentStatus::Captured);
        ids.push(payment.id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "all six got the same payment: {ids:?}");
    assert_eq!(app.gateway.charges(), 1, "the gateway charged once");
    assert_eq!(app.gateway.refunds(), 0);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM payments.payments WHERE status = 'captured'")
            .await,
        1
    );
    assert_eq!(app.events().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_charges_of_different_orders_do_not_wait_for_each_other() {
    let app = spawn_app().await;
    let orders: Vec<OrderId> = (0..8).map(|_| OrderId::generate()).collect();
    let tasks: Vec<_> = orders
        .iter()
        .map(|&order| {
            let api = app.api.clone();
            tokio::spawn(async move { api.charge(order, money("1.00"), tokens::VISA).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(app.gateway.charges(), 8);
    assert_eq!(app.payments().await, 8);
}

#[tokio::test]
async fn a_declined_order_can_be_paid_with_another_card() {
    let app = spawn_app().await;
    let order = OrderId::generate();
    assert!(matches!(
        app.api.charge(order, money("7.50"), tokens::DECLINED).await,
        Err(PaymentError::Declined { .. })
    ));
    assert!(matches!(
        app.api.charge(order, money("7.50"), tokens::DECLINED).await,
        Err(PaymentError::Declined { .. })
    ));
    let paid = app
        .api
        .charge(order, money("7.50"), tokens::VISA)
        .await
        .unwrap();
    let statuses: Vec<PaymentStatus> = app
        .api
        .for_order(order)
        .await
        .unwrap()
        .iter()
        .map(|p| p.status)
        .collect();
    assert_eq!(
        statuses,
        [
            PaymentStatus::Declined,
            PaymentStatus::Declined,
            PaymentStatus::Captured
        ],
        "oldest first"
    );
    assert_eq!(app.api.for_order(order).await.unwrap()[2], paid);
    assert_eq!(app.gateway.charges(), 1);
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM payments.events WHERE event_type = 'payment.declined'"
        )
        .await,
        2
    );
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM payments.events WHERE event_type = 'payment.captured'"
        )
        .await,
        1
    );
}

/// Settles the payment it is asked to charge behind the service's back (as `captured`: a
/// reconciler that asked the gateway first; as `failed`: one that asked before the charge
/// reached the gateway), then charges the card.
struct RacingGateway {
    inner: payments::SimulatedGateway,
    db: kernel::testing::TestDatabase,
    settle_as: &'static str,
}

#[async_trait]
impl PaymentGateway for RacingGateway {
    async fn charge(
        &self,
        payment_id: PaymentId,
        amount: Money,
        token: &str,
    ) -> Result<GatewayReceipt, GatewayError> {
        let settled = self
            .db
            .scalar(&format!(
                "WITH u AS (UPDATE payments.payments SET status = '{}', version = 1 \
                 WHERE id = '{payment_id}' AND status = 'pending' RETURNING 1) \
                 SELECT count(*) AS n FROM u",
                self.settle_as
            ))
            .await;
        assert_eq!(
            settled, 1,
            "the payment was committed pending before the call"
        );
        self.inner.charge(payment_id, amount, token).await
    }

    async fn refund(&self, payment_id: PaymentId, amount: Money) -> Result<(), GatewayError> {
        self.inner.refund(payment_id, amount).await
    }

    async fn lookup(&self, payment_id: PaymentId) -> Result<ChargeState, GatewayError> {
        self.inner.lookup(payment_id).await
    }

    async fn void(&self, payment_id: PaymentId) -> Result<ChargeState, GatewayError> {
        self.inner.void(payment_id).await
    }
}

#[tokio::test]
async fn a_payment_settled_by_someone_else_meanwhile_is_answered_not_settled_again() {
    let app = spawn_app().await;
    let order = OrderId::generate();
    let gateway = Arc::new(RacingGateway {
        inner: crate::simulated_gateway(&app.db, crate::SLOW_ANSWER),
        db: app.db.clone(),
        settle_as: "captured",
    });
    let service = app.service_with(gateway.clone());
    let payment = service
        .charge(order, money("3.00"), tokens::VISA)
        .await
        .unwrap();
    assert_eq!(payment.status, PaymentStatus::Captured);
    assert_eq!(gateway.inner.charges(), 1);
    assert_eq!(app.api.for_order(order).await.unwrap(), vec![payment]);
    assert_eq!(
        app.events().await,
        0,
        "the settler that came first owns the event; the late one writes none"
    );
}

#[tokio::test]
async fn the_database_refuses_a_second_live_payment_of_an_order() {
    let app = spawn_app().await;
    let order = OrderId::generate();
    let insert = |status: &str| {
        format!(
            "INSERT INTO payments.payments (id, order_id, amount, status, version, created_at, \
             updated_at) VALUES ('{}', '{order}', 1, '{status}', 1, now(), now())",
            PaymentId::generate()
        )
    };
    let mut conn = app.db.connect().await;
    use diesel_async::RunQueryDsl;
    for status in ["declined", "failed", "declined", "failed", "pending"] {
        diesel::sql_query(insert(status))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{status}: {e}"));
    }
    for status in ["pending", "captured", "refunded"] {
        let err = diesel::sql_query(insert(status))
            .execute(&mut conn)
            .await
            .expect_err(status);
        assert!(
            err.to_string().contains("payments_one_live_per_order_idx"),
            "{status}: {err}"
        );
    }
}

#[tokio::test]
async fn a_capture_of_a_payment_settled_failed_meanwhile_is_given_back() {
    let app = spawn_app().await;
    let order = OrderId::generate();
    let gateway = Arc::new(RacingGateway {
        inner: crate::simulated_gateway(&app.db, crate::SLOW_ANSWER),
        db: app.db.clone(),
        settle_as: "failed",
    });
    let service = app.service_with(gateway.clone());
    let err = service
        .charge(order, money("3.00"), tokens::VISA)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PaymentError::GatewayUnavailable(_)),
        "{err:?}"
    );
    assert_eq!(gateway.inner.charges(), 1);
    assert_eq!(gateway.inner.refunds(), 1, "the money went back");
    let payments = app.api.for_order(order).await.unwrap();
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, PaymentStatus::Failed);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM gateway.ledger WHERE outcome = 'charged'")
            .await,
        0,
        "the ledger keeps no charge without a captured payment"
    );
}
