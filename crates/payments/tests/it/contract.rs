//! The in-memory fake other modules' suites use keeps the same promises as the real
//! service: one scenario, run against both.

use std::sync::Arc;

use kernel::{Money, OrderId, PaymentId};
use payments_api::testing::InMemoryPayments;
use payments_api::{PaymentApi, PaymentError, PaymentStatus, tokens};

use crate::{money, spawn_app};

fn kind(result: &Result<payments_api::Payment, PaymentError>) -> &'static str {
    match result {
        Ok(p) if p.status == PaymentStatus::Captured => "captured",
        Ok(p) if p.status == PaymentStatus::Refunded => "refunded",
        Ok(_) => "other payment",
        Err(PaymentError::Declined { .. }) => "declined",
        Err(PaymentError::GatewayUnavailable(_)) => "gateway unavailable",
        Err(PaymentError::InvalidToken { .. }) => "invalid token",
        Err(PaymentError::Invalid(_)) => "invalid",
        Err(PaymentError::NotFound(_)) => "not found",
        Err(PaymentError::Pending { .. }) => "pending",
        Err(PaymentError::AlreadyPending { .. }) => "already pending",
        Err(PaymentError::Unexpected(_)) => "unexpected",
    }
}

async fn scenario(api: &dyn PaymentApi, charges: &dyn Fn() -> usize) {
    let order = OrderId::generate();
    let steps = [
        (Money::ZERO, tokens::VISA, "invalid"),
        (money("9.99"), tokens::GATEWAY_ERROR, "gateway unavailable"),
        (money("9.99"), "tok_unknown", "invalid token"),
        (money("9.99"), tokens::DECLINED, "declined"),
        (money("9.99"), tokens::VISA, "captured"),
        (money("9.99"), tokens::VISA, "captured"),
        (money("9.99"), tokens::DECLINED, "captured"),
    ];
    let mut captured = None;
    for (amount, token, expected) in steps {
        let result = api.charge(order, amount, token).await;
        assert_eq!(kind(&result), expected, "{amount} {token}: {result:?}");
        if let Ok(payment) = result {
            assert_eq!(*captured.get_or_insert(payment.id), payment.id);
        }
    }
    assert_eq!(charges(), 1, "one gateway charge");
    let refunded = api.refund(order).await.unwrap().unwrap();
    assert_eq!(Some(refunded.id), captured);
    assert_eq!(api.refund(order).await.unwrap().unwrap(), refunded);
    let again = api.charge(order, money("9.99"), tokens::VISA).await;
    assert_eq!(kind(&again), "refunded");
    assert_eq!(charges(), 1);
    let statuses: Vec<PaymentStatus> = api
        .for_order(order)
        .await
        .unwrap()
        .iter()
        .map(|p| p.status)
        .collect();
    assert_eq!(
        statuses,
        [
            PaymentStatus::Failed,
            PaymentStatus::Declined,
            PaymentStatus::Refunded
        ]
    );
    assert_eq!(api.refund(OrderId::generate()).await.unwrap(), None);
    assert!(api.for_order(OrderId::generate()).await.unwrap().is_empty());
    let unknown = PaymentId::generate();
    assert!(matches!(api.get(unknown).await, Err(PaymentError::NotFound(id)) if id == unknown));
}

#[tokio::test]
async fn the_service_keeps_the_contract() {
    let app = spawn_app().await;
    let gateway = app.gateway.clone();
    scenario(app.api.as_ref(), &move || gateway.charges()).await;
}

#[tokio::test]
async fn the_in_memory_fake_keeps_the_contract() {
    let fake = Arc::new(InMemoryPayments::default());
    let counted = fake.clone();
    scenario(fake.as_ref(), &move || counted.charges()).await;
}
