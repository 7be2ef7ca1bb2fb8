//! The bounds of placement: a customer's pending orders (`MAX_PENDING_ORDERS`), and a
//! total one payment can charge.

use std::sync::Arc;

use serde_json::json;

/// A customer holds at most `MAX_PENDING_ORDERS` pending orders: one more is `409
/// too_many_pending_orders` and reserves nothing; a confirmed or cancelled order frees a
/// place; concurrent placements count one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_holds_at_most_max_pending_orders() {
    let app = Arc::new(
        crate::spawn_with(orders::Settings {
            max_pending_orders: 3,
            ..crate::spawn_settings()
        })
        .await,
    );
    let (user, product) = app.shop(100);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(app.placed(&user, &product, 1).await);
    }
    let before = app.stock(&product).await;
    let refused = app.place(&user, &product, 1).await;
    let detail = refused.assert_problem(409, "too_many_pending_orders")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains('3'), "says the limit: {detail}");
    assert_eq!(app.stock(&product).await, before, "nothing reserved");
    let rows = app
        .db
        .scalar("SELECT count(*) AS n FROM orders.orders")
        .await;
    assert_eq!(rows, 3, "nothing recorded");

    let confirmed = app
        .command(&held[0], "confirm", json!({"payment_token": "tok_visa"}))
        .await;
    assert_eq!(confirmed.status, 202, "{:#}", confirmed.body);
    let cancelled = app
        .command(&held[1], "cancel", json!({"reason": "no"}))
        .await;
    assert_eq!(cancelled.status, 202, "{:#}", cancelled.body);
    app.placed(&user, &product, 1).await;
    app.placed(&user, &product, 1).await;
    app.place(&user, &product, 1)
        .await
        .assert_problem(409, "too_many_pending_orders");

    // Another customer, ten placements at once: exactly three get through.
    let racer = app
        .users
        .add("racer@example.com", "Racer", true)
        .id
        .to_string();
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let (app, racer, product) = (app.clone(), racer.clone(), product.clone());
            tokio::spawn(async move { app.place(&racer, &product, 1).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [202, 202, 202, 409, 409, 409, 409, 409, 409, 409]);
}

/// An order whose total is more than one payment can charge is refused when placed
/// (`422`, saying why), not left holding stock until its confirm fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_too_large_to_pay_is_refused_at_placement() {
    let app = crate::spawn_app().await;
    let user = app
        .users
        .add("rich@example.com", "Rich", true)
        .id
        .to_string();
    let yacht = app
        .products
        .add("Yacht", "1000000000.00", 100)
        .id
        .to_string();
    let answer = app.place(&user, &yacht, 10).await;
    // A rule of the catalog's prices now, as stock is: the request is well formed.
    let problem = answer.assert_problem(409, "total_too_large");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("9999999999.99"),
        "{problem:#}"
    );
    assert_eq!(app.stock(&yacht).await, (100, 0), "nothing reserved");
    assert_eq!(
        app.db
            .scalar("SELECT count(*) AS n FROM orders.orders")
            .await,
        0
    );
    assert_eq!(
        app.placed(&user, &yacht, 9).await.len(),
        36,
        "9,000,000,000.00 is payable"
    );
}
