//! The reservation API orders will use: all-or-nothing, never oversold, idempotent.

use kernel::{OrderId, ProductId};
use products_api::{ProductError, ReservationLine, ReservationStatus};

use crate::{TestApp, reserve, spawn_app};

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
                app.reserve(OrderId::generate(), &bad).await,
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

    app.reserve(order, &lines).await.unwrap();
    app.reserve(order, &lines)
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
    app.reserve(pending, &[line(a, 2)]).await.unwrap();
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
    app.reserve(order, &[line(product, 2)])
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
            let (api, caller) = (app.api.clone(), app.caller.clone());
            tokio::spawn(async move {
                reserve(
                    api.as_ref(),
                    &caller,
                    OrderId::generate(),
                    &[line(product, 1)],
                )
                .await
            })
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

/// Reservations that name the same products in opposite orders lock them in one order
/// (the products' ids), so none waits for another that waits for it: every one is taken,
/// none fails on a deadlock Postgres had to break.
#[tokio::test]
async fn crossing_reservations_take_their_products_in_one_order() {
    let app = spawn_app().await;
    let mut products = Vec::new();
    for name in ["first", "second", "third"] {
        products.push(product_id(&app, name, 1000).await);
    }
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let (api, caller) = (app.api.clone(), app.caller.clone());
            let mut lines: Vec<_> = products.iter().map(|p| line(*p, 1)).collect();
            lines.rotate_left(i % 3);
            if i % 2 == 1 {
                lines.reverse();
            }
            tokio::spawn(async move {
                reserve(api.as_ref(), &caller, OrderId::generate(), &lines).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for product in &products {
        assert_eq!(
            app.stock_and_reserved(&product.to_string()).await,
            (940, 60)
        );
    }
    assert_eq!(
        app.db
            .scalar("SELECT count(*) AS n FROM products.reservation_lines")
            .await,
        180
    );
}

#[tokio::test]
async fn concurrent_repeats_of_one_reservation_take_stock_once() {
    let app = spawn_app().await;
    let product = product_id(&app, "once", 10).await;
    let order = OrderId::generate();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (api, caller) = (app.api.clone(), app.caller.clone());
            tokio::spawn(
                async move { reserve(api.as_ref(), &caller, order, &[line(product, 3)]).await },
            )
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

/// A reservation is part of its caller's transaction: undone when the caller rolls back,
/// kept when it commits; it runs as the products module's role, and the caller's
/// connection acts as the caller's own role again once the transaction ends.
#[tokio::test]
async fn a_reservation_commits_or_rolls_back_with_its_callers_transaction() {
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl;
    use kernel::db::Unit;

    #[derive(diesel::QueryableByName)]
    struct Acting {
        #[diesel(sql_type = Text)]
        role: String,
        #[diesel(sql_type = Text)]
        path: String,
    }
    const ACTING: &str =
        "SELECT current_user::text AS role, current_setting('search_path') AS path";

    let app = spawn_app().await;
    let product = product_id(&app, "shared", 5).await;
    let mut conn = kernel::db::connect(&app.caller).await.unwrap();

    let undone = OrderId::generate();
    let outcome: Result<(), ProductError> = kernel::db::transaction(&mut conn, async |conn| {
        let mut unit = Unit::new(conn, &crate::CALLER);
        app.api
            .reserve(&mut unit, undone, &[line(product, 2)])
            .await?;
        assert_eq!(unit.acting(), "products");
        let inside: Acting = diesel::sql_query(ACTING)
            .get_result(unit.acting_as(&products::SCHEMA).await?)
            .await
            .unwrap();
        assert_eq!(
            (inside.role.as_str(), inside.path.as_str()),
            ("emporium_products", "products")
        );
        Err(anyhow::anyhow!("the caller's own next statement failed").into())
    })
    .await;
    assert!(outcome.is_err());
    assert_eq!(app.stock_and_reserved(&product.to_string()).await, (5, 0));
    assert!(matches!(
        app.api.reservation(undone).await,
        Err(ProductError::ReservationNotFound(_))
    ));
    let after: Acting = diesel::sql_query(ACTING)
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (after.role.as_str(), after.path.as_str()),
        ("emporium_caller", "caller")
    );

    let kept = OrderId::generate();
    kernel::db::transaction(&mut conn, async |conn| {
        let mut unit = Unit::new(conn, &crate::CALLER);
        app.api.reserve(&mut unit, kept, &[line(product, 2)]).await
    })
    .await
    .unwrap();
    assert_eq!(app.stock_and_reserved(&product.to_string()).await, (3, 2));
    assert_eq!(
        app.api.reservation(kept).await.unwrap(),
        ReservationStatus::Reserved
    );
    let after: Acting = diesel::sql_query(ACTING)
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(after.role, "emporium_caller");
}
