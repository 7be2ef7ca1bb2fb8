//! Who sees which payments, over HTTP (the contract's table, the payments rows): a
//! customer the payments of their own orders, `support` and `admin` all; another
//! customer's payment answers exactly as an unknown one.

use kernel::{OrderId, PaymentId, Role, UserId};
use payments_api::tokens;
use serde_json::json;

use crate::{money, spawn_app};

#[tokio::test]
async fn a_customer_sees_the_payments_of_their_own_orders_only() {
    let app = spawn_app().await;
    let (owner, other) = (UserId::generate(), UserId::generate());
    let order = OrderId::generate();
    app.owners.insert(order, owner);
    let payment = app
        .api
        .charge(order, money("5"), tokens::VISA)
        .await
        .unwrap();
    let (get, list) = (
        format!("/payments/{}", payment.id),
        format!("/payments?order_id={order}"),
    );

    for client in [
        app.http.as_customer(owner),
        app.http.as_staff(&[Role::Support]),
        app.http.as_staff(&[Role::Admin]),
    ] {
        let answer = client.get(&get).await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        let listed = client.get(&list).await;
        assert_eq!(listed.body["payments"][0]["id"], payment.id.to_string());
    }

    for client in [
        app.http.as_customer(other),
        app.http.as_staff(&[Role::Catalog, Role::Fulfilment]),
    ] {
        let theirs = client.get(&get).await;
        theirs.assert_problem(404, "payment_not_found");
        let unknown = PaymentId::generate().to_string();
        let nobodys = client.get(&format!("/payments/{unknown}")).await;
        assert_eq!(
            theirs.shape_without(&payment.id.to_string()),
            nobodys.shape_without(&unknown)
        );
        let listed = client.get(&list).await;
        assert_eq!(listed.status, 200);
        assert_eq!(
            listed.body,
            json!({"payments": []}),
            "as for an unknown order"
        );
    }

    let anonymous = app.http.anonymous().get(&get).await;
    anonymous.assert_problem(401, "unauthenticated");
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
    app.http
        .anonymous()
        .get(&list)
        .await
        .assert_problem(401, "unauthenticated");
    app.http
        .as_admin_token()
        .get(&get)
        .await
        .assert_problem(403, "forbidden");
    app.http
        .with_bearer("forged.token")
        .get(&list)
        .await
        .assert_problem(401, "unauthenticated");
}
