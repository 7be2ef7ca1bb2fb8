//! Voiding a key: the reconciler settles a payment `failed` from a key the gateway never
//! heard of only after voiding it, so a charge that reaches the gateway after that takes
//! nothing, even if our process dies before it could give anything back.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kernel::{Money, OrderId, PaymentId};
use payments::{
    ChargeState, GatewayError, GatewayReceipt, PaymentGateway, PaymentService, PaymentSettings,
    SimulatedGateway,
};
use payments_api::{PaymentApi, PaymentError, PaymentStatus, tokens};
use tokio::sync::Semaphore;

use crate::reconciler::reconciled;
use crate::{SETTINGS, SLOW_ANSWER, money, simulated_gateway, spawn_app};

/// Holds each charge at its door until the test lets it through, as a slow network or a
/// stalled process holds a call that has not yet reached the gateway.
struct GatedGateway {
    inner: SimulatedGateway,
    /// A permit per charge that has arrived at the door.
    arrived: Semaphore,
    /// A permit per charge let through.
    open: Semaphore,
}

impl GatedGateway {
    fn new(inner: SimulatedGateway) -> Self {
        GatedGateway {
            inner,
            arrived: Semaphore::new(0),
            open: Semaphore::new(0),
        }
    }
}

#[async_trait]
impl PaymentGateway for GatedGateway {
    async fn charge(
        &self,
        payment_id: PaymentId,
        amount: Money,
        token: &str,
    ) -> Result<GatewayReceipt, GatewayError> {
        self.arrived.add_permits(1);
        self.open.acquire().await.expect("the gate").forget();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_reaching_the_gateway_after_the_reconciler_gave_up_takes_nothing() {
    let app = spawn_app().await;
    let gated = Arc::new(GatedGateway::new(simulated_gateway(&app.db, SLOW_ANSWER)));
    // The charging process: a deadline long enough that its call is still going when the
    // reconciler asks, and a crash right after the gateway answers a capture, before it
    // could settle the payment or give the money back.
    let dying = PaymentService::new(
        app.pool.clone(),
        gated.clone(),
        PaymentSettings {
            gateway_timeout: Duration::from_secs(60),
            faults: Some(Arc::new(|point| anyhow::bail!("crashed at {point}"))),
        },
    );
    let order = OrderId::generate();
    let charge =
        tokio::spawn(async move { dying.charge(order, money("7.00"), tokens::VISA).await });
    gated
        .arrived
        .acquire()
        .await
        .expect("the charge arrives")
        .forget();
    let pending = app.api.for_order(order).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].status, PaymentStatus::Pending);
    let id = pending[0].id;
    // The call has stalled past the point where the reconciler asks about it.
    app.count(&format!(
        "WITH u AS (UPDATE payments.payments SET check_after = now() WHERE id = '{id}' \
         RETURNING 1) SELECT count(*) AS n FROM u"
    ))
    .await;
    let reconciler = app.service_with_settings(SETTINGS);
    let settled = reconciled(&app, &[&reconciler], id).await;
    assert_eq!(
        settled.status,
        PaymentStatus::Failed,
        "the gateway knew no such key"
    );

    // Now the charge reaches the gateway, and its process dies with whatever it answered
    // (on a capture: at `after_gateway_charge`, before it could give the money back).
    gated.open.add_permits(1);
    let answer = charge.await.unwrap();
    assert!(
        matches!(answer, Err(PaymentError::GatewayUnavailable(_))),
        "the late charge is told it took nothing: {answer:?}"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM gateway.ledger WHERE key = '{id}' AND outcome = 'charged'"
        ))
        .await,
        0,
        "the gateway's ledger holds a charge for a payment settled failed: money taken, never \
         given back"
    );
    assert_eq!(gated.inner.charges(), 0, "the gateway took nothing");
    assert_eq!(app.api.get(id).await.unwrap().status, PaymentStatus::Failed);
    assert_eq!(gated.inner.lookup(id).await.unwrap(), ChargeState::Voided);
    assert_eq!(app.events().await, 1, "payment.failed, once");
}

/// Answers every lookup "never heard of it", as a lookup that ran just before the charge
/// reached the gateway would; otherwise the simulated gateway.
struct StaleLookups(SimulatedGateway);

#[async_trait]
impl PaymentGateway for StaleLookups {
    async fn charge(
        &self,
        payment_id: PaymentId,
        amount: Money,
        token: &str,
    ) -> Result<GatewayReceipt, GatewayError> {
        self.0.charge(payment_id, amount, token).await
    }

    async fn refund(&self, payment_id: PaymentId, amount: Money) -> Result<(), GatewayError> {
        self.0.refund(payment_id, amount).await
    }

    async fn lookup(&self, _payment_id: PaymentId) -> Result<ChargeState, GatewayError> {
        Ok(ChargeState::Unknown)
    }

    async fn void(&self, payment_id: PaymentId) -> Result<ChargeState, GatewayError> {
        self.0.void(payment_id).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_that_finds_the_charge_settles_the_payment_captured() {
    let app = spawn_app().await;
    let crashing = app.service_with_settings(PaymentSettings {
        faults: Some(Arc::new(|point| anyhow::bail!("crashed at {point}"))),
        ..SETTINGS
    });
    let order = OrderId::generate();
    crashing
        .charge(order, money("7.00"), tokens::VISA)
        .await
        .unwrap_err();
    let id = app.api.for_order(order).await.unwrap()[0].id;
    app.count(&format!(
        "WITH u AS (UPDATE payments.payments SET check_after = now() WHERE id = '{id}'          RETURNING 1) SELECT count(*) AS n FROM u"
    ))
    .await;
    let stale = app.service_with(Arc::new(StaleLookups(simulated_gateway(
        &app.db,
        SLOW_ANSWER,
    ))));
    let payment = reconciled(&app, &[&stale], id).await;
    assert_eq!(
        payment.status,
        PaymentStatus::Captured,
        "the void found the charge"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM gateway.ledger WHERE key = '{id}' AND outcome = 'charged'"
        ))
        .await,
        1,
        "the void left the charge as it was"
    );
    assert_eq!(app.gateway.charges(), 1);
}

/// What the key holds: its outcome and whether it has an amount.
async fn entry(app: &crate::TestApp, key: PaymentId) -> (i64, i64) {
    let count = |sql: String| async move { app.count(&sql).await };
    (
        count(format!(
            "SELECT count(*) AS n FROM gateway.ledger WHERE key = '{key}' AND outcome = 'voided'              AND amount IS NULL"
        ))
        .await,
        count(format!(
            "SELECT count(*) AS n FROM gateway.ledger WHERE key = '{key}'"
        ))
        .await,
    )
}

#[tokio::test]
async fn a_void_closes_an_unknown_key_and_answers_a_known_one() {
    let app = spawn_app().await;
    let gateway = &app.gateway;
    let receipt = |key: PaymentId| GatewayReceipt {
        reference: format!("sim_ch_{}", key.as_uuid().simple()),
    };

    let unknown = PaymentId::generate();
    for _ in 0..2 {
        assert_eq!(gateway.void(unknown).await, Ok(ChargeState::Voided));
    }
    assert_eq!(
        entry(&app, unknown).await,
        (1, 1),
        "one tombstone, no amount"
    );
    assert_eq!(gateway.lookup(unknown).await, Ok(ChargeState::Voided));
    for token in [tokens::VISA, tokens::TIMEOUT, tokens::DECLINED] {
        let answer = gateway.charge(unknown, money("5"), token).await;
        assert!(
            matches!(answer, Err(GatewayError::Voided(_))),
            "{token}: {answer:?}"
        );
    }
    let refund = gateway.refund(unknown, money("5")).await;
    assert!(
        matches!(refund, Err(GatewayError::NotCharged(_))),
        "{refund:?}"
    );
    assert_eq!((gateway.charges(), gateway.refunds()), (0, 0));

    // (token, refunded after, what a void answers): the void changes none of them.
    type Case = (&'static str, bool, fn(GatewayReceipt) -> ChargeState);
    let cases: [Case; 4] = [
        (tokens::VISA, false, ChargeState::Charged),
        (tokens::VISA, true, ChargeState::Refunded),
        (tokens::DECLINED, false, |_| {
            ChargeState::Declined("card declined".into())
        }),
        (tokens::GATEWAY_ERROR, false, |_| {
            ChargeState::Failed("simulated gateway error".into())
        }),
    ];
    for (token, refunded, expected) in cases {
        let key = PaymentId::generate();
        let _ = gateway.charge(key, money("5"), token).await;
        if refunded {
            gateway.refund(key, money("5")).await.unwrap();
        }
        let before = gateway.lookup(key).await.unwrap();
        assert_eq!(
            gateway.void(key).await,
            Ok(expected(receipt(key))),
            "{token}"
        );
        assert_eq!(gateway.lookup(key).await.unwrap(), before, "{token}");
        assert_eq!(entry(&app, key).await, (0, 1), "{token}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_charge_and_a_void_at_once_from_two_instances_agree() {
    let app = spawn_app().await;
    let (one, two) = (
        Arc::new(simulated_gateway(&app.db, SLOW_ANSWER)),
        Arc::new(simulated_gateway(&app.db, SLOW_ANSWER)),
    );
    let mut charged = 0;
    for _ in 0..20 {
        let key = PaymentId::generate();
        let (charger, voider) = (one.clone(), two.clone());
        let (charge, void) = tokio::join!(
            tokio::spawn(async move { charger.charge(key, money("3"), tokens::VISA).await }),
            tokio::spawn(async move { voider.void(key).await }),
        );
        match (charge.unwrap(), void.unwrap()) {
            (Ok(receipt), Ok(ChargeState::Charged(found))) => {
                assert_eq!(receipt, found);
                charged += 1;
            }
            (Err(GatewayError::Voided(_)), Ok(ChargeState::Voided)) => {}
            other => panic!("the charge and the void disagree: {other:?}"),
        }
        assert_eq!(entry(&app, key).await.1, 1, "one entry per key");
    }
    assert_eq!(
        one.charges(),
        charged,
        "money taken exactly for the charges voids found"
    );
    assert_eq!(two.charges(), 0);
}
