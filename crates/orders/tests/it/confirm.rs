//! Confirm against everything that can happen to an order while its payment is being
//! taken: other confirms, a cancel, the sweeper. A confirm fences the order before it
//! charges, so of concurrent confirms exactly one succeeds, and nobody cancels or expires
//! an order while its customer is being charged for it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::{TestApp, gates, spawn_with};

fn settings(faults: Option<orders::FaultHook>, order_expiry: Duration) -> orders::Settings {
    orders::Settings {
        order_expiry,
        sweep_every: Duration::from_secs(3600),
        confirm_fence: Duration::from_secs(30),
        idempotency_ttl: Duration::from_secs(86_400),
        max_pending_orders: 20,
        faults,
    }
}

/// Starts a confirm with `tok_visa` on the test's runtime, and waits until it has charged
/// and stands at `after_charge`; the returned gate lets it finish.
async fn held_after_charge(
    app: &Arc<TestApp>,
    gate: &mut crate::Gate,
    id: &str,
) -> tokio::task::JoinHandle<Result<orders_api::Accepted, orders_api::OrderError>> {
    let confirm = tokio::spawn({
        let commands = app.module.commands();
        let id = id.parse().unwrap();
        async move {
            commands
                .confirm(id, "tok_visa".into(), None, orders_api::Scope::Any)
                .await
        }
    });
    gate.reached().await;
    confirm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_confirms_exactly_one_succeeds() {
    let (hook, [mut charged]) = gates(["after_charge"]);
    let app = Arc::new(spawn_with(settings(Some(hook), Duration::from_secs(1800))).await);
    let (user, product) = app.shop(10);
    let id = app.placed(&user, &product, 2).await;
    let first = held_after_charge(&app, &mut charged, &id).await;

    // While the first one is between its charge and its confirmation, nobody else gets in:
    // not another card, not a declined one riding on the first one's capture, not a
    // confirm from the same version.
    for token in ["tok_visa", "tok_declined"] {
        app.command(&id, "confirm", json!({"payment_token": token}))
            .await
            .assert_problem(409, "payment_pending");
    }
    let from_version_1 = app
        .http
        .request("POST", &format!("/commands/orders/{id}/confirm"))
        .header("If-Match", "\"1\"")
        .json(&json!({"payment_token": "tok_visa"}))
        .send()
        .await
        .unwrap();
    assert_eq!(from_version_1.status(), 409);

    charged.open();
    let accepted = first.await.unwrap().expect("the first confirm succeeds");
    assert_eq!(accepted.version, 2);
    app.command(&id, "confirm", json!({"payment_token": "tok_visa"}))
        .await
        .assert_problem(409, "invalid_transition");
    assert_eq!(app.payments.charges(), 1, "one charge");
    assert_eq!(app.view(&id, 2).await["status"], "confirmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_while_the_order_is_being_charged_is_refused_and_charges_nothing_back() {
    let (hook, [mut charged]) = gates(["after_charge"]);
    let app = Arc::new(spawn_with(settings(Some(hook), Duration::from_secs(1800))).await);
    let (user, product) = app.shop(10);
    let id = app.placed(&user, &product, 2).await;
    let confirm = held_after_charge(&app, &mut charged, &id).await;

    app.command(&id, "cancel", json!({"reason": "changed my mind"}))
        .await
        .assert_problem(409, "payment_pending");
    charged.open();
    let accepted = confirm
        .await
        .unwrap()
        .expect("the customer who was charged gets the order");
    assert_eq!(accepted.version, 2);
    assert_eq!(app.view(&id, 2).await["status"], "confirmed");
    assert_eq!(app.payments.refunds(), 0, "nothing to give back");
    assert_eq!(app.stock(&product).await, (8, 0), "the stock is sold");

    // Once confirmed, a cancel goes through as usual (and refunds).
    let cancelled = app
        .command(&id, "cancel", json!({"reason": "changed my mind"}))
        .await;
    assert_eq!(cancelled.status, 202, "{:#}", cancelled.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_leaves_an_order_that_is_being_charged() {
    let (hook, [mut charged]) = gates(["after_charge"]);
    let app = Arc::new(spawn_with(settings(Some(hook), Duration::ZERO)).await);
    let (user, product) = app.shop(10);
    let id = app.placed(&user, &product, 2).await;
    let confirm = held_after_charge(&app, &mut charged, &id).await;

    app.module.sweep().await.unwrap();
    charged.open();
    let accepted = confirm.await.unwrap().expect("the confirm succeeds");
    assert_eq!(accepted.version, 2);
    assert_eq!(app.view(&id, 2).await["status"], "confirmed");
    assert_eq!(app.payments.refunds(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_does_not_expire_an_order_whose_payment_is_pending() {
    let app = spawn_with(settings(None, Duration::ZERO)).await;
    let (user, product) = app.shop(10);
    let id = app.placed(&user, &product, 2).await;
    app.command(&id, "confirm", json!({"payment_token": "tok_timeout"}))
        .await
        .assert_problem(504, "payment_pending");

    app.module.sweep().await.unwrap();
    let status = app
        .db
        .scalar(&format!(
            "SELECT count(*) AS n FROM orders.orders WHERE id = '{id}' AND status = 'pending' AND version = 1"
        ))
        .await;
    assert_eq!(status, 1, "still pending while its payment is");
    assert_eq!(
        app.stock(&product).await,
        (8, 2),
        "and still holding its stock"
    );

    // A customer may still cancel it; the payment, once it settles, is given back then.
    let cancelled = app
        .command(&id, "cancel", json!({"reason": "too slow"}))
        .await;
    assert_eq!(cancelled.status, 202, "{:#}", cancelled.body);
}

/// A refund the gateway cannot make now is recorded by the payments module and retried by
/// its reconciler; the cancellation's other step, giving the stock back, must not wait for
/// it (nor may the saga park the event after its retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_order_gets_its_stock_back_while_the_gateway_cannot_refund() {
    let app = spawn_with(settings(None, Duration::from_secs(1800))).await;
    let (user, product) = app.shop(10);
    let id = app.placed(&user, &product, 3).await;
    let confirmed = app
        .command(&id, "confirm", json!({"payment_token": "tok_visa"}))
        .await;
    assert_eq!(confirmed.status, 202, "{:#}", confirmed.body);
    assert_eq!(app.stock(&product).await, (7, 0));

    app.payments.gateway_down(true);
    let cancelled = app
        .command(&id, "cancel", json!({"reason": "changed my mind"}))
        .await;
    assert_eq!(cancelled.status, 202, "{:#}", cancelled.body);
    app.wait_until("the stock is back", async || {
        app.stock(&product).await == (10, 0)
    })
    .await;
    // The saga has applied `order.cancelled` (it would be parked after its retries).
    app.wait_until("the saga has passed order.cancelled", async || {
        app.db
            .scalar("SELECT count(*) AS n FROM orders.checkpoints WHERE subscriber = 'orders_saga' AND source = 'orders' AND applied = (SELECT count(*) FROM orders.events)")
            .await
            == 1
    })
    .await;
    let parked = app
        .db
        .scalar("SELECT count(*) AS n FROM orders.dead_letters")
        .await;
    assert_eq!(parked, 0, "nothing parked");
    assert_eq!(
        app.payments.refunds(),
        0,
        "the gateway gave nothing back yet"
    );
}

/// Orders whose payments stay pending stay due, and the sweeper passes them by on every
/// sweep: however many of them there are, the orders behind them still expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_orders_with_pending_payments_does_not_hide_the_ones_behind_it() {
    // One customer with a hundred pending orders: more than MAX_PENDING_ORDERS allows.
    let app = spawn_with(orders::Settings {
        max_pending_orders: 1000,
        ..settings(None, Duration::ZERO)
    })
    .await;
    let (user, product) = app.shop(1000);
    for _ in 0..101 {
        let id = app.placed(&user, &product, 1).await;
        app.command(&id, "confirm", json!({"payment_token": "tok_timeout"}))
            .await
            .assert_problem(504, "payment_pending");
    }
    let behind = app.placed(&user, &product, 1).await;

    app.module.sweep().await.unwrap();
    let view = app.view(&behind, 2).await;
    assert_eq!(
        (view["status"].as_str(), view["cancel_reason"].as_str()),
        (Some("cancelled"), Some("expired"))
    );
    let still_pending = app
        .db
        .scalar("SELECT count(*) AS n FROM orders.orders WHERE status = 'pending'")
        .await;
    assert_eq!(
        still_pending, 101,
        "the ones with a pending payment wait for it"
    );
}
