//! The gateway as an external system: a payment is committed `pending` before the gateway
//! is asked, the call holds no transaction and no lock, every call has a deadline, and an
//! unanswered call leaves the payment `pending` (a refund: its intent recorded).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use kernel::testing::TestDatabase;
use kernel::{Money, OrderId, PaymentId};
use payments::{ChargeState, GatewayError, GatewayReceipt, PaymentGateway, SimulatedGateway};
use payments_api::{PaymentError, PaymentStatus, tokens};

use crate::{GATEWAY_TIMEOUT, SLOW_ANSWER, money, simulated_gateway, spawn_app};

#[tokio::test]
async fn a_charge_unanswered_in_time_stays_pending_and_blocks_another() {
    let app = spawn_app().await;
    for (token, ledger) in [
        (tokens::TIMEOUT, "charged"),
        (tokens::TIMEOUT_FAILED, "failed"),
    ] {
        let order = OrderId::generate();
        let started = Instant::now();
        let err = app
            .api
            .charge(order, money("6.00"), token)
            .await
            .unwrap_err();
        let took = started.elapsed();
        let PaymentError::Pending {
            order_id,
            payment_id,
        } = err
        else {
            panic!("{token}: {err:?}");
        };
        assert_eq!(order_id, order);
        assert!(
            took >= GATEWAY_TIMEOUT && took < SLOW_ANSWER,
            "{token}: gave up after {took:?}"
        );
        let payment = app.api.get(payment_id).await.unwrap();
        assert_eq!(payment.status, PaymentStatus::Pending, "{token}");
        assert_eq!(
            app.count(&format!(
                "SELECT count(*) AS n FROM payments.payments WHERE id = '{payment_id}' \
                 AND version = 0 AND gateway_reference IS NULL"
            ))
            .await,
            1
        );
        assert_eq!(
            app.count(&format!(
                "SELECT count(*) AS n FROM gateway.ledger WHERE key = '{payment_id}' \
                 AND outcome = '{ledger}'"
            ))
            .await,
            1,
            "{token}: the gateway did its part under the payment's id"
        );

        // Another charge, once the pending one's call is over, answers at once without
        // asking the gateway.
        let again = app.api.charge(order, money("6.00"), tokens::VISA).await;
        assert!(
            matches!(again, Err(PaymentError::AlreadyPending { payment_id: p, .. }) if p == payment_id),
            "{token}: {again:?}"
        );
        assert_eq!(
            app.api.refund(order).await.unwrap(),
            None,
            "nothing captured yet"
        );
        assert_eq!(app.api.for_order(order).await.unwrap(), vec![payment]);
    }
    assert_eq!(app.events().await, 0, "a pending payment publishes nothing");
    assert_eq!(
        app.gateway.charges(),
        1,
        "tok_timeout charged; nothing else did"
    );
}

/// What the database looked like while the gateway was being asked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Seen {
    /// The payment's committed status, as another connection sees it.
    status: Option<String>,
    /// Advisory locks held in the database.
    advisory_locks: i64,
    /// Connections idle inside a transaction.
    open_transactions: i64,
}

/// Looks at the database from outside at each call, then answers as the simulated gateway.
struct ProbingGateway {
    inner: SimulatedGateway,
    db: TestDatabase,
    seen: Mutex<Vec<Seen>>,
}

impl ProbingGateway {
    async fn probe(&self, payment_id: PaymentId) {
        let count = |sql: String| async move { self.db.scalar(&sql).await };
        let status = ["pending", "captured", "refunded"];
        let mut seen = Seen::default();
        for s in status {
            let n = count(format!(
                "SELECT count(*) AS n FROM payments.payments WHERE id = '{payment_id}' \
                 AND status = '{s}'"
            ))
            .await;
            if n == 1 {
                seen.status = Some(s.to_owned());
            }
        }
        seen.advisory_locks = count(
            "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                .to_owned(),
        )
        .await;
        seen.open_transactions = count(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
             AND state LIKE 'idle in transaction%'"
                .to_owned(),
        )
        .await;
        self.seen.lock().unwrap().push(seen);
    }
}

#[async_trait]
impl PaymentGateway for ProbingGateway {
    async fn charge(
        &self,
        payment_id: PaymentId,
        amount: Money,
        token: &str,
    ) -> Result<GatewayReceipt, GatewayError> {
        self.probe(payment_id).await;
        self.inner.charge(payment_id, amount, token).await
    }

    async fn refund(&self, payment_id: PaymentId, amount: Money) -> Result<(), GatewayError> {
        self.probe(payment_id).await;
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
async fn the_gateway_is_asked_outside_any_transaction_and_lock() {
    let app = spawn_app().await;
    let gateway = Arc::new(ProbingGateway {
        inner: simulated_gateway(&app.db, SLOW_ANSWER),
        db: app.db.clone(),
        seen: Mutex::default(),
    });
    let service = app.service_with(gateway.clone());
    let order = OrderId::generate();
    use payments_api::PaymentApi;
    service
        .charge(order, money("2.50"), tokens::VISA)
        .await
        .unwrap();
    service.refund(order).await.unwrap().expect("refunded");
    let outside = |status: &str| Seen {
        status: Some(status.to_owned()),
        advisory_locks: 0,
        open_transactions: 0,
    };
    assert_eq!(
        *gateway.seen.lock().unwrap(),
        [outside("pending"), outside("captured")],
        "the charge's pending row and the refund's intent were committed, and nothing was \
         held, while the gateway was asked"
    );
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM payments.payments WHERE status = 'refunded' \
             AND refund_requested_at IS NOT NULL"
        )
        .await,
        1
    );
}

/// Charges as the simulated gateway; never answers a refund.
struct SilentRefunds(SimulatedGateway);

#[async_trait]
impl PaymentGateway for SilentRefunds {
    async fn charge(
        &self,
        payment_id: PaymentId,
        amount: Money,
        token: &str,
    ) -> Result<GatewayReceipt, GatewayError> {
        self.0.charge(payment_id, amount, token).await
    }

    async fn refund(&self, _payment_id: PaymentId, _amount: Money) -> Result<(), GatewayError> {
        std::future::pending().await
    }

    async fn lookup(&self, payment_id: PaymentId) -> Result<ChargeState, GatewayError> {
        self.0.lookup(payment_id).await
    }

    async fn void(&self, payment_id: PaymentId) -> Result<ChargeState, GatewayError> {
        self.0.void(payment_id).await
    }
}

#[tokio::test]
async fn a_refund_unanswered_in_time_keeps_its_intent_and_is_asked_again() {
    let app = spawn_app().await;
    let silent = app.service_with(Arc::new(SilentRefunds(simulated_gateway(
        &app.db,
        SLOW_ANSWER,
    ))));
    let order = OrderId::generate();
    use payments_api::PaymentApi;
    let paid = silent
        .charge(order, money("4.00"), tokens::VISA)
        .await
        .unwrap();
    let err = silent.refund(order).await.unwrap_err();
    assert!(
        matches!(err, PaymentError::Pending { payment_id, .. } if payment_id == paid.id),
        "{err:?}"
    );
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM payments.payments WHERE status = 'captured' \
             AND refund_requested_at IS NOT NULL"
        )
        .await,
        1,
        "still captured, the refund's intent recorded"
    );
    assert_eq!(app.events().await, 1, "only the capture");

    let refunded = app.api.refund(order).await.unwrap().expect("a payment");
    assert_eq!(
        (refunded.id, refunded.status),
        (paid.id, PaymentStatus::Refunded)
    );
    assert_eq!(app.gateway.refunds(), 1);
    assert_eq!(app.events().await, 2);
}

/// Charges and refunds as the simulated gateway, then loses the answer (a connection cut
/// after the request reached it): the outcome is unknown to the caller.
struct LostAnswers(SimulatedGateway);

#[async_trait]
impl PaymentGateway for LostAnswers {
    async fn charge(
        &self,
        payment_id: PaymentId,
        amount: Money,
        token: &str,
    ) -> Result<GatewayReceipt, GatewayError> {
        self.0.charge(payment_id, amount, token).await?;
        Err(GatewayError::Indeterminate("connection reset".into()))
    }

    async fn refund(&self, payment_id: PaymentId, amount: Money) -> Result<(), GatewayError> {
        self.0.refund(payment_id, amount).await?;
        Err(GatewayError::Indeterminate("connection reset".into()))
    }

    async fn lookup(&self, payment_id: PaymentId) -> Result<ChargeState, GatewayError> {
        self.0.lookup(payment_id).await
    }

    async fn void(&self, payment_id: PaymentId) -> Result<ChargeState, GatewayError> {
        self.0.void(payment_id).await
    }
}

/// An answer lost after the gateway acted is no "nothing taken": the payment stays
/// `pending` (a refund keeps its intent) until asking by key settles it as it happened.
#[tokio::test]
async fn a_lost_answer_leaves_the_outcome_to_asking_by_key() {
    let app = spawn_app().await;
    let lossy = app.service_with(Arc::new(LostAnswers(simulated_gateway(
        &app.db,
        SLOW_ANSWER,
    ))));
    let order = OrderId::generate();
    use payments_api::PaymentApi;
    let err = lossy
        .charge(order, money("5.00"), tokens::VISA)
        .await
        .unwrap_err();
    let PaymentError::Pending { payment_id, .. } = err else {
        panic!("{err:?}")
    };
    let due_now =
        format!("UPDATE payments.payments SET check_after = now() WHERE id = '{payment_id}'");
    app.count(&format!(
        "WITH u AS ({due_now} RETURNING 1) SELECT count(*) AS n FROM u"
    ))
    .await;
    assert_eq!(
        lossy
            .reconcile(&crate::reconciler::settings())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        app.api.get(payment_id).await.unwrap().status,
        PaymentStatus::Captured,
        "the gateway took it, so it is captured"
    );

    let err = lossy.refund(order).await.unwrap_err();
    assert!(matches!(err, PaymentError::Pending { .. }), "{err:?}");
    let refunded = app.api.refund(order).await.unwrap().expect("a payment");
    assert_eq!(
        refunded.status,
        PaymentStatus::Refunded,
        "asked again, it settles"
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM gateway.ledger WHERE outcome = 'refunded'")
            .await,
        1,
        "given back once"
    );
}
