//! Who may do what with orders, over HTTP (the contract's table, the orders rows): a
//! customer places, confirms, cancels and reads their own orders only, and gets the same
//! `404` for anyone else's as for an unknown one; staff by role. Every refusal changes
//! nothing.

use kernel::testing::Http;
use kernel::{Role, UserId};
use serde_json::{Value, json};

use crate::{TestApp, spawn_app};

struct Shop {
    app: TestApp,
    owner: UserId,
    product: String,
    customer: Http,
    other: Http,
}

async fn shop() -> Shop {
    let app = spawn_app().await;
    let owner = app.users.add("owner@example.com", "Owner", true).id;
    let other = app.users.add("other@example.com", "Other", true).id;
    let product = app.products.add("Lamp", "12.50", 100).id.to_string();
    Shop {
        customer: app.http.as_customer(owner),
        other: app.http.as_customer(other),
        app,
        owner,
        product,
    }
}

impl Shop {
    /// An order the owner placed themself (`user_id` omitted).
    async fn order(&self) -> String {
        let answer = self
            .customer
            .post(
                "/commands/orders",
                json!({"items": [{"product_id": self.product, "quantity": 1}]}),
            )
            .await;
        assert_eq!(answer.status, 202, "{:#}", answer.body);
        answer.body["order_id"].as_str().unwrap().to_owned()
    }

    async fn view(&self, id: &str) -> Value {
        self.app.view(id, 1).await
    }

    async fn orders_in_db(&self) -> i64 {
        self.app
            .db
            .scalar("SELECT count(*) AS n FROM orders.orders")
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_places_orders_for_themself_only() {
    let shop = shop().await;
    let id = shop.order().await;
    assert_eq!(shop.view(&id).await["user_id"], shop.owner.to_string());
    let mine = shop
        .customer
        .post(
            "/commands/orders",
            json!({"user_id": shop.owner, "items": [{"product_id": shop.product, "quantity": 1}]}),
        )
        .await;
    assert_eq!(mine.status, 202, "naming themself is fine: {:#}", mine.body);

    let before = (
        shop.orders_in_db().await,
        shop.app.stock(&shop.product).await,
    );
    let someone = UserId::generate();
    let body = json!({"user_id": someone, "items": [{"product_id": shop.product, "quantity": 1}]});
    shop.customer
        .post("/commands/orders", body.clone())
        .await
        .assert_problem(403, "forbidden");
    let anonymous = shop
        .app
        .http
        .anonymous()
        .post("/commands/orders", body.clone())
        .await;
    anonymous.assert_problem(401, "unauthenticated");
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
    shop.app
        .http
        .as_admin_token()
        .post("/commands/orders", body.clone())
        .await
        .assert_problem(403, "forbidden");
    for role in [Role::Catalog, Role::Fulfilment] {
        shop.app
            .http
            .as_staff(&[role])
            .post("/commands/orders", body.clone())
            .await
            .assert_problem(403, "forbidden");
    }
    assert_eq!(
        (
            shop.orders_in_db().await,
            shop.app.stock(&shop.product).await
        ),
        before,
        "no refused placement left anything behind"
    );

    let for_them = shop.app.users.add("them@example.com", "Them", true).id;
    let support = shop
        .app
        .http
        .as_staff(&[Role::Support])
        .post(
            "/commands/orders",
            json!({"user_id": for_them, "items": [{"product_id": shop.product, "quantity": 1}]}),
        )
        .await;
    assert_eq!(support.status, 202, "{:#}", support.body);
    let id = support.body["order_id"].as_str().unwrap();
    assert_eq!(shop.view(id).await["user_id"], for_them.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customers_order_answers_exactly_as_an_unknown_one() {
    let shop = shop().await;
    let id = shop.order().await;
    shop.view(&id).await;
    let unknown = kernel::OrderId::generate().to_string();
    let requests: [(&str, Option<Value>); 3] = [
        ("/queries/orders/{}", None),
        (
            "/commands/orders/{}/confirm",
            Some(json!({"payment_token": "tok_visa"})),
        ),
        (
            "/commands/orders/{}/cancel",
            Some(json!({"reason": "mine now"})),
        ),
    ];
    for (path, body) in requests {
        let call = async |id: &str| {
            let path = path.replace("{}", id);
            match &body {
                None => shop.other.get(&path).await,
                Some(body) => shop.other.post(&path, body.clone()).await,
            }
        };
        let theirs = call(&id).await;
        theirs.assert_problem(404, "order_not_found");
        let nobodys = call(&unknown).await;
        assert_eq!(
            theirs.shape_without(&id),
            nobodys.shape_without(&unknown),
            "{path}"
        );
    }
    let view = shop.view(&id).await;
    assert_eq!(
        (view["status"].as_str(), view["version"].as_i64()),
        (Some("pending"), Some(1))
    );
    assert_eq!(shop.app.payments.charges(), 0, "nobody was charged");

    // Lists: a customer's is their own, whatever they ask for.
    let own = shop.other.get("/queries/orders").await;
    assert_eq!(own.status, 200, "{:#}", own.body);
    assert_eq!(own.body["total"], 0, "{:#}", own.body);
    shop.other
        .get(&format!("/queries/orders?user_id={}", shop.owner))
        .await
        .assert_problem(403, "forbidden");
    let mine = shop.customer.get("/queries/orders").await;
    assert_eq!(mine.body["total"], 1, "{:#}", mine.body);
    for role in [Role::Fulfilment, Role::Support, Role::Admin] {
        let staff = shop.app.http.as_staff(&[role]);
        let read = staff.get(&format!("/queries/orders/{id}")).await;
        assert_eq!(read.status, 200, "{role}: {:#}", read.body);
        let list = staff
            .get(&format!("/queries/orders?user_id={}", shop.owner))
            .await;
        assert_eq!(list.body["total"], 1, "{role}: {:#}", list.body);
    }
    shop.app
        .http
        .as_staff(&[Role::Catalog])
        .get(&format!("/queries/orders/{id}"))
        .await
        .assert_problem(404, "order_not_found");
    let anonymous = shop.app.http.anonymous();
    anonymous
        .get(&format!("/queries/orders/{id}"))
        .await
        .assert_problem(401, "unauthenticated");
    anonymous
        .get("/queries/orders")
        .await
        .assert_problem(401, "unauthenticated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_cancels_their_order_until_it_ships() {
    let shop = shop().await;
    let fulfilment = shop.app.http.as_staff(&[Role::Fulfilment]);

    let pending = shop.order().await;
    let cancelled = shop
        .customer
        .post(
            &format!("/commands/orders/{pending}/cancel"),
            json!({"reason": "no"}),
        )
        .await;
    assert_eq!(cancelled.status, 202, "{:#}", cancelled.body);

    let shipped = shop.order().await;
    let confirm = shop
        .customer
        .post(
            &format!("/commands/orders/{shipped}/confirm"),
            json!({"payment_token": "tok_visa"}),
        )
        .await;
    assert_eq!(
        confirm.status, 202,
        "the owner confirms: {:#}",
        confirm.body
    );
    for staff in [&shop.customer, &shop.app.http.as_staff(&[Role::Support])] {
        staff
            .post(&format!("/commands/orders/{shipped}/ship"), json!(null))
            .await
            .assert_problem(403, "forbidden");
    }
    let ship = fulfilment
        .post(&format!("/commands/orders/{shipped}/ship"), json!(null))
        .await;
    assert_eq!(ship.status, 202, "{:#}", ship.body);
    shop.customer
        .post(
            &format!("/commands/orders/{shipped}/cancel"),
            json!({"reason": "too late"}),
        )
        .await
        .assert_problem(403, "forbidden");
    let view = shop.app.view(&shipped, 3).await;
    assert_eq!(
        view["status"], "shipped",
        "the refused cancel changed nothing"
    );
    assert_eq!(shop.app.payments.refunds(), 0);

    let support = shop
        .app
        .http
        .as_staff(&[Role::Support])
        .post(
            &format!("/commands/orders/{shipped}/cancel"),
            json!({"reason": "returned"}),
        )
        .await;
    assert_eq!(
        support.status, 202,
        "support cancels a shipped order: {:#}",
        support.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_customer_cannot_confirm_even_with_a_valid_token() {
    use users_api::{UserApi, UserChanges};
    let shop = shop().await;
    let id = shop.order().await;
    shop.app
        .users
        .update(
            shop.owner,
            UserChanges {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    shop.customer
        .post(
            &format!("/commands/orders/{id}/confirm"),
            json!({"payment_token": "tok_visa"}),
        )
        .await
        .assert_problem(409, "user_inactive");
    shop.customer
        .post(
            "/commands/orders",
            json!({"items": [{"product_id": shop.product, "quantity": 1}]}),
        )
        .await
        .assert_problem(409, "user_inactive");
    assert_eq!(shop.app.payments.charges(), 0, "nobody was charged");
    assert_eq!(shop.view(&id).await["status"], "pending");
}
