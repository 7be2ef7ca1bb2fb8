//! The saga asks other modules (payments, and through it the gateway; products) outside
//! any transaction: while a refund it asked for is slow, no transaction of ours stands
//! open, none holds a transaction id, and every reader's watermark moves on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use kernel::{Money, NewEvent, OrderId, PaymentId};
use payments_api::testing::InMemoryPayments;
use payments_api::{Payment, PaymentApi, PaymentError, events as payment_events};
use serde_json::json;
use tokio::sync::watch;

use crate::{PAYMENT_LOG, TestApp, spawn_paying_through};

/// How long a refund waits at a closed gate at most: longer than a test waits for
/// anything, so a test fails on what it waits for, not on a refund let go by itself.
const REFUND_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The payments fake, whose refunds wait while the gate is closed (as a slow gateway's
/// would), counting those waiting.
struct SlowRefunds {
    inner: Arc<InMemoryPayments>,
    open: watch::Sender<bool>,
    waiting: AtomicUsize,
}

impl SlowRefunds {
    fn close(&self) {
        self.open.send_replace(false);
    }

    fn open(&self) {
        self.open.send_replace(true);
    }
}

#[async_trait]
impl PaymentApi for SlowRefunds {
    async fn charge(
        &self,
        order_id: OrderId,
        amount: Money,
        token: &str,
    ) -> Result<Payment, PaymentError> {
        self.inner.charge(order_id, amount, token).await
    }

    async fn refund(&self, order_id: OrderId) -> Result<Option<Payment>, PaymentError> {
        let mut open = self.open.subscribe();
        if !*open.borrow() {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let opened = tokio::time::timeout(REFUND_WAIT, open.wait_for(|open| *open)).await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if opened.is_err() {
                return Err(PaymentError::Unexpected(anyhow::anyhow!(
                    "the test never let the refund go on"
                )));
            }
        }
        self.inner.refund(order_id).await
    }

    async fn get(&self, id: PaymentId) -> Result<Payment, PaymentError> {
        self.inner.get(id).await
    }

    async fn for_order(&self, order_id: OrderId) -> Result<Vec<Payment>, PaymentError> {
        self.inner.for_order(order_id).await
    }
}

async fn spawn() -> (TestApp, Arc<SlowRefunds>) {
    let (open, _) = watch::channel(true);
    let mut gate = None;
    let app = spawn_paying_through(crate::spawn_settings(), |inner| {
        let slow = Arc::new(SlowRefunds {
            inner,
            open,
            waiting: AtomicUsize::new(0),
        });
        gate = Some(slow.clone());
        slow
    })
    .await;
    (app, gate.expect("the payments were wrapped"))
}

/// Transactions of the test database standing open between statements, and those holding
/// a transaction id (which hold back the watermark of every event-log reader), but the
/// asking one's.
const OPEN: &str = "SELECT count(*) FILTER (WHERE state LIKE 'idle in transaction%') \
       + 1000 * count(*) FILTER (WHERE backend_xid IS NOT NULL) AS n \
     FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()";

/// Waits until no transaction of the test database stands open or holds an id. A
/// background task's statement may hold one for a moment (a checkpoint written, a relay's
/// batch); one held across the refund holds it until the gate opens (`REFUND_WAIT`, longer
/// than any wait), so the wait fails on it.
async fn no_transaction_waits(app: &TestApp) {
    app.wait_until(
        "no transaction waits on the refund (n = open + 1000 x holding an xid)",
        async || app.db.scalar(OPEN).await == 0,
    )
    .await;
}

/// Whether the saga has applied every event of the orders log.
const SAGA_CAUGHT_UP: &str = "SELECT count(*) AS n FROM orders.checkpoints \
     WHERE subscriber = 'orders_saga' AND source = 'orders' \
     AND applied = (SELECT count(*) FROM orders.events)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellations_refund_is_asked_outside_any_transaction() {
    let (app, gate) = spawn().await;
    let (user, product) = app.shop(5);
    let id = app.placed(&user, &product, 1).await;
    let confirmed = app
        .command(&id, "confirm", json!({"payment_token": "tok_visa"}))
        .await;
    assert_eq!(confirmed.status, 202, "{:#}", confirmed.body);
    app.view(&id, 2).await;

    // The cancel's own refund and the saga's (on order.cancelled) both wait at the gate.
    gate.close();
    let http = app.http.clone();
    let path = format!("/commands/orders/{id}/cancel");
    let cancel = tokio::spawn(async move { http.post(&path, json!({"reason": "no"})).await });
    app.wait_until("the request and the saga ask for the refund", async || {
        gate.waiting.load(Ordering::SeqCst) == 2
    })
    .await;
    app.view(&id, 3).await;
    no_transaction_waits(&app).await;

    gate.open();
    assert_eq!(cancel.await.unwrap().status, 202);
    app.wait_until("the payment is refunded once", async || {
        app.payments.refunds() == 1
    })
    .await;
    assert_eq!(app.stock(&product).await, (5, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_capture_of_a_cancelled_order_is_refunded_outside_any_transaction() {
    let (app, gate) = spawn().await;
    let (user, product) = app.shop(5);
    let id = app.placed(&user, &product, 1).await;
    let cancelled = app
        .command(&id, "cancel", json!({"reason": "changed my mind"}))
        .await;
    assert_eq!(cancelled.status, 202, "{:#}", cancelled.body);
    app.wait_until("the saga has seen the cancellation", async || {
        app.db.scalar(SAGA_CAUGHT_UP).await == 1
    })
    .await;
    // The payment settles captured only now (a reconciler's late answer).
    let order: OrderId = id.parse().unwrap();
    let amount = Money::parse("12.50").unwrap();
    let payment = app
        .payments
        .charge(order, amount, "tok_visa")
        .await
        .unwrap();
    gate.close();
    let captured = payment_events::PaymentCaptured {
        payment_id: payment.id,
        order_id: order,
        amount,
    };
    {
        let mut conn = kernel::db::connect(&app.payment_log).await.unwrap();
        let event = NewEvent::new(payment_events::PAYMENT_CAPTURED, payment.id, 2, &captured);
        eventlog::append(&mut conn, PAYMENT_LOG.name, &[event])
            .await
            .unwrap();
    }
    app.wait_until("the saga asks for the refund", async || {
        gate.waiting.load(Ordering::SeqCst) == 1
    })
    .await;

    // Meanwhile the read model still sees what is placed.
    let other = app.placed(&user, &product, 1).await;
    app.wait_until(
        "the read model sees an order placed while the saga waits on a refund \
         (a transaction id held across the call holds back every reader's watermark)",
        async || {
            let answer = app.http.get(&format!("/queries/orders/{other}")).await;
            answer.status == 200
        },
    )
    .await;
    no_transaction_waits(&app).await;

    gate.open();
    app.wait_until("the late capture is refunded", async || {
        app.payments.refunds() == 1
    })
    .await;
}
