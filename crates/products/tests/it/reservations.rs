//! The reservation API orders will use: all-or-nothing, never oversold, idempotent.

use std::sync::Arc;

use kernel::{OrderId, ProductId};
use products_api::{ProductApi, ProductError, ReservationLine, ReservationStatus};

use crate::{TestApp, spawn_app};

async fn product_id(app: &TestApp, name: &str, stock: i64) -> ProductId {
    app.product(name, "2.50", stock).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn line(product_id: ProductId, quantity: u32) -> ReservationLine {
    ReservationLine {
        product_id,
        quantity,
    }
}

#[tokio::test]
async fn reserve_is_all_or_nothing() {
    let app = spawn_app().await;
    let plenty = product_id(&app, "plenty", 10).await;
    let scarce = product_id(&app, "scarce", 1).await;
    let order = OrderId::generate();

    let err = app
        .api
        .reserve(order, &[line(plenty, 4), line(scarce, 2)])
        .await
        .unwrap_err();
    match err {
        ProductError::InsufficientStock {
            product_id,
            requested,
            available,
        } => {
            assert_eq!((product_id, requested, available), (scarce, 2, 1));
        }
        other => panic!("expected insufficient stock, got {other:?}"),
    }
    assert_eq!(
        app.stock_and_reserved(&plenty.to_string()).await,
        (10, 0),
        "the first line was rolled back"
    );
    assert_eq!(app.stock_and_reserved(&scarce.to_string()).await, (1, 0));
    assert!(matches!(
        app.api.reservation(order).await,
        Err(ProductError::ReservationNotFound(_))
    ));

    let unknown = ProductId::generate();
    let err = app
        .api
        .reserve(OrderId::generate(), &[line(plenty, 1), line(unknown, 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProductError::UnknownProducts(ref ids) if ids == &[unknown]),
        "{err:?}"
    );
    assert_eq!(app.stock_and_reserved(&plenty.to_string()).await, (10, 0));

    for bad in [
        vec![],
        vec![line(plenty, 0)],
        vec![line(plenty, 1), line(plenty, 1)],
    ] {
        assert!(
            matches!(
                app.api.reserve(OrderId::generate(), &bad).await,
                Err(ProductError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        app.db
            .scalar("SELECT count(*) AS n FROM products.reservations")
            .await,
        0
    );
}

#[tokio::test]
async fn reserve_commit_release_and_return_move_stock_exactly_once() {
    let app = spawn_app().await;
    let a = product_id(&app, "a", 10).await;
    let b = product_id(&app, "b", 5).await;
    let order = OrderId::generate();
    let lines = [line(a, 3), line(b, 5)];

    app.api.reserve(order, &lines).await.unwrap();
    app.api
        .reserve(order, &lines)
        .await
        .expect("repeating a reservation is a no-op");
    assert_eq!(app.stock_and_reserved(&a.to_string()).await, (7, 3));
    assert_eq!(app.stock_and_reserved(&b.to_string()).await, (0, 5));
    assert_eq!(
        app.api.reservation(order).await.unwrap(),
        ReservationStatus::Reserved
    );

    app.api.commit(order).await.unwrap();
    app.api.commit(order).await.expect("commit is idempotent");
    assert_eq!(app.stock_and_reserved(&a.to_string()).await, (7, 0));
    assert_eq!(app.stock_and_reserved(&b.to_string()).await, (0, 0));
    assert!(matches!(
        app.api.release(order).await,
        Err(ProductError::ReservationClosed {
            status: ReservationStatus::Committed,
            ..
        })
    ));

    app.api.return_stock(order).await.unwrap();
    app.api
        .return_stock(order)
        .await
        .expect("return is idempotent");
    assert_eq!(app.stock_and_reserved(&a.to_string()).await, (10, 0));
    assert_eq!(app.stock_and_reserved(&b.to_string()).await, (5, 0));
    assert_eq!(
        app.api.reservation(order).await.unwrap(),
        ReservationStatus::Returned
    );

    let pending = OrderId::generate();
    app.api.reserve(pending, &[line(a, 2)]).await.unwrap();
    assert!(matches!(
        app.api.return_stock(pending).await,
        Err(ProductError::ReservationClosed { .. })
    ));
    app.api.release(pending).await.unwrap();
    app.api
        .release(pending)
        .await
        .expect("release is idempotent");
    assert_eq!(app.stock_and_reserved(&a.to_string()).await, (10, 0));
    assert!(matches!(
        app.api.commit(pending).await,
        Err(ProductError::ReservationClosed {
            status: ReservationStatus::Released,
            ..
        })
    ));
    assert!(matches!(
        app.api.commit(OrderId::generate()).await,
        Err(ProductError::ReservationNotFound(_))
    ));
}

#[tokio::test]
async fn release_before_reserve_fences_the_order() {
    let app = spawn_app().await;
    let product = product_id(&app, "fenced", 5).await;
    let order = OrderId::generate();
    app.api
        .release(order)
        .await
        .expect("releasing an unknown order is fine");
    app.api
        .reserve(order, &[line(product, 2)])
        .await
        .expect("a late reservation is a no-op");
    assert_eq!(
        app.stock_and_reserved(&product.to_string()).await,
        (5, 0),
        "nothing was reserved"
    );
    assert_eq!(
        app.api.reservation(order).await.unwrap(),
        ReservationStatus::Released
    );
}

#[tokio::test]
async fn fifty_concurrent_reservations_never_oversell_twenty() {
    let app = spawn_app().await;
    let product = product_id(&app, "hot", 20).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let api: Arc<dyn ProductApi> = app.api.clone();
            tokio::spawn(async move { api.reserve(OrderId::generate(), &[line(product, 1)]).await })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => accepted += 1,
            Err(ProductError::InsufficientStock { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted, 20);
    assert_eq!(app.stock_and_reserved(&product.to_string()).await, (0, 20));
    assert_eq!(
        app.db
            .scalar("SELECT count(*) AS n FROM products.reservations")
            .await,
        20
    );
}

#[tokio::test]
async fn concurrent_repeats_of_one_reservation_take_stock_once() {
    let app = spawn_app().await;
    let product = product_id(&app, "once", 10).await;
    let order = OrderId::generate();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let api = app.api.clone();
            tokio::spawn(async move { api.reserve(order, &[line(product, 3)]).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(app.stock_and_reserved(&product.to_string()).await, (7, 3));
}

#[tokio::test]
async fn lookup_names_prices_and_unknown_ids() {
    let app = spawn_app().await;
    let a = product_id(&app, "alpha", 1).await;
    let b = product_id(&app, "beta", 1).await;
    let found = app.api.lookup(&[b, a]).await.unwrap();
    let names: Vec<&str> = found.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["beta", "alpha"], "in the order asked");
    assert_eq!(found[0].price.to_string(), "2.50");
    let ghost = ProductId::generate();
    assert!(
        matches!(app.api.lookup(&[a, ghost]).await, Err(ProductError::UnknownProducts(ids)) if ids == [ghost])
    );
}
