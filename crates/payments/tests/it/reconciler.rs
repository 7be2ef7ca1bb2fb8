//! The reconciler settles what no answer settled, by asking the gateway by key: a
//! timeout, a crash between the gateway's capture and our commit, a call that never
//! reached the gateway, an unconfirmed refund; several instances at once settle each
//! payment once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kernel::{OrderId, PaymentId};
use payments::{PaymentService, ReconcilerSettings};
use payments_api::{PaymentApi, PaymentError, PaymentStatus, tokens};
use serde_json::json;

use crate::{GATEWAY_TIMEOUT, SETTINGS, TestApp, money, spawn_app};

pub(crate) fn settings() -> ReconcilerSettings {
    ReconcilerSettings {
        every: Duration::from_millis(50),
        batch: 20,
        longest_pause: Duration::from_secs(2),
    }
}

/// Runs reconciliation rounds with `services` at once until the payment is no longer
/// pending (or 20 s passed); returns it.
pub(crate) async fn reconciled(
    app: &TestApp,
    services: &[&PaymentService],
    id: PaymentId,
) -> payments_api::Payment {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let settings = settings();
        let rounds = services.iter().map(|s| s.reconcile(&settings));
        for round in futures_util::future::join_all(rounds).await {
            round.expect("a round");
        }
        let payment = app.api.get(id).await.unwrap();
        if payment.status != PaymentStatus::Pending || Instant::now() > deadline {
            return payment;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pending_charge(app: &TestApp, order: OrderId, token: &str) -> PaymentId {
    match app.api.charge(order, money("7.00"), token).await {
        Err(PaymentError::Pending { payment_id, .. }) => payment_id,
        other => panic!("{token}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_charge_is_settled_by_asking_the_gateway() {
    let app = spawn_app().await;
    let cases = [
        (tokens::TIMEOUT, PaymentStatus::Captured, "payment.captured"),
        (
            tokens::TIMEOUT_FAILED,
            PaymentStatus::Failed,
            "payment.failed",
        ),
    ];
    for (token, status, event) in cases {
        let order = OrderId::generate();
        let id = pending_charge(&app, order, token).await;
        let service = app.service_with_settings(SETTINGS);
        let payment = reconciled(&app, &[&service], id).await;
        assert_eq!(payment.status, status, "{token}");
        let mut payload = json!({"payment_id": id, "order_id": order, "amount": "7.00"});
        if status == PaymentStatus::Failed {
            payload["reason"] = json!("simulated gateway timeout");
        }
        assert_eq!(
            app.events_with_the_row(id, event, 1, &payload).await,
            1,
            "{token}: {event} in the settling transaction"
        );
    }
    assert_eq!(app.gateway.charges(), 1);
    assert_eq!(app.events().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_capture_and_our_commit_is_settled_with_one_charge() {
    let app = spawn_app().await;
    let crashing = app.service_with_settings(payments::PaymentSettings {
        faults: Some(Arc::new(|point| anyhow::bail!("crashed at {point}"))),
        ..SETTINGS
    });
    let order = OrderId::generate();
    let err = crashing
        .charge(order, money("7.00"), tokens::VISA)
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentError::Unexpected(_)), "{err:?}");
    let pending = app.api.for_order(order).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].status, PaymentStatus::Pending);
    assert_eq!(app.gateway.charges(), 1, "the gateway had captured it");

    // Two instances at once.
    let (one, two) = (
        app.service_with_settings(SETTINGS),
        app.service_with_settings(SETTINGS),
    );
    let payment = reconciled(&app, &[&one, &two], pending[0].id).await;
    assert_eq!(payment.status, PaymentStatus::Captured);
    assert_eq!(app.events().await, 1, "settled once");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM gateway.ledger WHERE outcome = 'charged'")
            .await,
        1,
        "exactly one charge in the gateway's ledger"
    );
    assert_eq!(app.gateway.charges(), 1);
    // The order is paid: it is never charged again.
    let again = app
        .api
        .charge(order, money("7.00"), tokens::VISA)
        .await
        .unwrap();
    assert_eq!(again, payment);
    assert_eq!(app.gateway.charges(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_that_never_reached_the_gateway_is_failed() {
    let app = spawn_app().await;
    let (id, order) = (PaymentId::generate(), OrderId::generate());
    // A pending payment whose process died before it asked the gateway.
    app.count(&format!(
        "WITH i AS (INSERT INTO payments.payments (id, order_id, amount, status, version, \
         check_after, created_at, updated_at) VALUES ('{id}', '{order}', 7, 'pending', 0, \
         now(), now(), now()) RETURNING 1) SELECT count(*) AS n FROM i"
    ))
    .await;
    let service = app.service_with_settings(SETTINGS);
    let payment = reconciled(&app, &[&service], id).await;
    assert_eq!(payment.status, PaymentStatus::Failed);
    assert_eq!(app.gateway.charges(), 0);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM gateway.ledger WHERE key = '{id}' AND outcome = 'voided'"
        ))
        .await,
        1,
        "settled failed once its key was voided"
    );
    use payments::PaymentGateway;
    let late = app.gateway.charge(id, money("7.00"), tokens::VISA).await;
    assert!(
        matches!(late, Err(payments::GatewayError::Voided(_))),
        "{late:?}"
    );
    let paid = app
        .api
        .charge(order, money("7.00"), tokens::VISA)
        .await
        .unwrap();
    assert_eq!(
        paid.status,
        PaymentStatus::Captured,
        "the order can be paid after it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_asked_before_the_charges_own_call_is_over() {
    let app = spawn_app().await;
    let order = OrderId::generate();
    let recorded = Instant::now();
    let id = pending_charge(&app, order, tokens::TIMEOUT).await;
    // The charge gave up after GATEWAY_TIMEOUT; the reconciler waits for twice that.
    let service = app.service_with_settings(SETTINGS);
    let settled = service.reconcile(&settings()).await.unwrap();
    if recorded.elapsed() < GATEWAY_TIMEOUT * 2 {
        assert_eq!(settled, 0, "too early to ask");
        assert_eq!(
            app.api.get(id).await.unwrap().status,
            PaymentStatus::Pending
        );
    }
    let payment = reconciled(&app, &[&service], id).await;
    assert_eq!(payment.status, PaymentStatus::Captured);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_refund_is_asked_for_again_until_confirmed() {
    let app = spawn_app().await;
    let order = OrderId::generate();
    let paid = app
        .api
        .charge(order, money("5.00"), tokens::VISA)
        .await
        .unwrap();
    // The refund's intent is recorded, as a refund cut short after it would leave it.
    app.count(&format!(
        "WITH u AS (UPDATE payments.payments SET refund_requested_at = now(), \
         check_after = now() WHERE id = '{}' RETURNING 1) SELECT count(*) AS n FROM u",
        paid.id
    ))
    .await;
    let (one, two) = (
        app.service_with_settings(SETTINGS),
        app.service_with_settings(SETTINGS),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.api.get(paid.id).await.unwrap().status != PaymentStatus::Refunded {
        assert!(Instant::now() < deadline, "never refunded");
        let settings = settings();
        let (a, b) = tokio::join!(one.reconcile(&settings), two.reconcile(&settings));
        a.unwrap();
        b.unwrap();
    }
    assert_eq!(app.gateway.refunds(), 1);
    let payload = json!({"payment_id": paid.id, "order_id": order, "amount": "5.00"});
    assert_eq!(
        app.events_with_the_row(paid.id, "payment.refunded", 2, &payload)
            .await,
        1
    );
    assert_eq!(app.events().await, 2, "captured, refunded once");
}
