//! The contract's table "Who may do what", route by route: every route of the products,
//! orders, payments and operations modules x every kind of caller -> the answer the table
//! gives, and every refused request leaves the database as it was. (The users routes have
//! the same matrix in their module's suite, `crates/users/tests/it/access.rs`; `/auth`
//! is for anyone.)

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use emporium::{Config, Hooks};
use kernel::Role;
use kernel::testing::{Answer, Http};
use serde_json::{Value, json};

use crate::{TestApp, spawn_with};

const ADMIN_TOKEN: &str = "access-matrix-admin-token";

/// The callers, in the order of every row's answers.
const CALLERS: [&str; 13] = [
    "anonymous",
    "the owner",
    "another customer",
    "an inactive customer, token still valid",
    "catalog",
    "fulfilment",
    "support",
    "admin",
    "ADMIN_TOKEN",
    "an expired token",
    "a token signed by another key",
    "a token for another audience",
    "a malformed token",
];

/// `200` with an empty list: the answer for a thing that does not exist.
const HIDDEN: u16 = 0;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Call {
    Health,
    Metrics,
    OpenApi,
    AsyncApi,
    Jwks,
    ListProducts,
    GetProduct,
    CreateProduct,
    ChangeProduct,
    Restock,
    PlaceOwn,
    PlaceForOwner,
    Confirm,
    Ship,
    Deliver,
    CancelPending,
    CancelShipped,
    GetOrder,
    ListOrders,
    ListOwnersOrders,
    GetPayment,
    ListPayments,
    Projections,
    Rebuild,
}

/// The table: each route's answer to each of [`CALLERS`].
#[rustfmt::skip]
const TABLE: [(Call, [u16; 13]); 24] = {
    use Call::*;
    const ANYONE: [u16; 13] = [200; 13];
    const CATALOG: [u16; 13] = [401, 403, 403, 403, 200, 403, 403, 200, 403, 401, 401, 401, 401];
    const FULFIL: [u16; 13] = [401, 403, 403, 403, 403, 202, 403, 202, 403, 401, 401, 401, 401];
    const ADMIN: [u16; 13] = [401, 403, 403, 403, 403, 403, 403, 200, 200, 401, 401, 401, 401];
    [
        (Health, ANYONE),
        (Metrics, ANYONE),
        (OpenApi, ANYONE),
        (AsyncApi, ANYONE),
        (Jwks, ANYONE),
        (ListProducts, ANYONE),
        (GetProduct, ANYONE),
        (CreateProduct, [401, 403, 403, 403, 201, 403, 403, 201, 403, 401, 401, 401, 401]),
        (ChangeProduct, CATALOG),
        (Restock, CATALOG),
        (PlaceOwn, [401, 202, 202, 409, 202, 202, 202, 202, 403, 401, 401, 401, 401]),
        (PlaceForOwner, [401, 202, 403, 403, 403, 403, 202, 202, 403, 401, 401, 401, 401]),
        (Confirm, [401, 202, 404, 409, 404, 404, 202, 202, 403, 401, 401, 401, 401]),
        (Ship, FULFIL),
        (Deliver, FULFIL),
        (CancelPending, [401, 202, 404, 404, 404, 404, 202, 202, 403, 401, 401, 401, 401]),
        (CancelShipped, [401, 403, 404, 404, 404, 404, 202, 202, 403, 401, 401, 401, 401]),
        (GetOrder, [401, 200, 404, 404, 404, 200, 200, 200, 403, 401, 401, 401, 401]),
        (ListOrders, [401, 200, 200, 200, 200, 200, 200, 200, 403, 401, 401, 401, 401]),
        (ListOwnersOrders, [401, 200, 403, 403, 403, 200, 200, 200, 403, 401, 401, 401, 401]),
        (GetPayment, [401, 200, 404, 404, 404, 404, 200, 200, 403, 401, 401, 401, 401]),
        (ListPayments, [401, 200, HIDDEN, HIDDEN, HIDDEN, HIDDEN, 200, 200, 403, 401, 401, 401, 401]),
        (Projections, ADMIN),
        (Rebuild, [401, 403, 403, 403, 403, 403, 403, 202, 202, 401, 401, 401, 401]),
    ]
};

impl Call {
    /// Whether the call, allowed, takes its order out of the state the next caller needs.
    fn changes_its_order(self) -> bool {
        matches!(
            self,
            Call::Confirm | Call::Ship | Call::Deliver | Call::CancelPending | Call::CancelShipped
        )
    }
}

/// What a call acts on: the owner's order in the state the call needs, and its payment.
#[derive(Clone, Default)]
struct Target {
    order: String,
    payment: String,
}

struct Shop {
    app: TestApp,
    owner: String,
    product: String,
}

impl Shop {
    /// An order of the owner, taken to `status` by staff.
    async fn order(&self, status: &str) -> Target {
        let order = self.app.placed(&self.owner, &[(&self.product, 1)]).await;
        let steps: &[(&str, Value)] = match status {
            "pending" => &[],
            "confirmed" => &[("confirm", json!({"payment_token": "tok_visa"}))],
            "shipped" => &[
                ("confirm", json!({"payment_token": "tok_visa"})),
                ("ship", json!(null)),
            ],
            other => panic!("no way to {other}"),
        };
        for (command, body) in steps {
            let answer = self.app.command(&order, command, body.clone()).await;
            assert_eq!(answer.status, 202, "{command}: {:#}", answer.body);
        }
        let payments = self
            .app
            .http
            .get(&format!("/payments?order_id={order}"))
            .await;
        let payment = payments.body["payments"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Target { order, payment }
    }

    /// A fresh target for `call`.
    async fn target(&self, call: Call) -> Target {
        match call {
            Call::Confirm | Call::CancelPending => self.order("pending").await,
            Call::Ship | Call::GetOrder | Call::GetPayment | Call::ListPayments => {
                self.order("confirmed").await
            }
            Call::Deliver | Call::CancelShipped => self.order("shipped").await,
            _ => Target::default(),
        }
    }

    async fn send(&self, http: &Http, call: Call, target: &Target) -> Answer {
        let (product, order, owner) = (&self.product, &target.order, &self.owner);
        let item = json!([{"product_id": product, "quantity": 1}]);
        match call {
            Call::Health => http.get("/health/live").await,
            Call::Metrics => http.get("/metrics").await,
            Call::OpenApi => http.get("/openapi.json").await,
            Call::AsyncApi => http.get("/asyncapi.json").await,
            Call::Jwks => http.get("/.well-known/jwks.json").await,
            Call::ListProducts => http.get("/products").await,
            Call::GetProduct => http.get(&format!("/products/{product}")).await,
            Call::CreateProduct => {
                http.post("/products", json!({"name": "Cheap", "price": "0.01"}))
                    .await
            }
            Call::ChangeProduct => {
                http.patch(&format!("/products/{product}"), json!({"price": "0.01"}))
                    .await
            }
            Call::Restock => {
                http.post(
                    &format!("/products/{product}/restock"),
                    json!({"quantity": 1}),
                )
                .await
            }
            Call::PlaceOwn => http.post("/commands/orders", json!({"items": item})).await,
            Call::PlaceForOwner => {
                http.post("/commands/orders", json!({"user_id": owner, "items": item}))
                    .await
            }
            Call::Confirm => {
                let body = json!({"payment_token": "tok_visa"});
                http.post(&format!("/commands/orders/{order}/confirm"), body)
                    .await
            }
            Call::Ship => {
                http.post(&format!("/commands/orders/{order}/ship"), json!(null))
                    .await
            }
            Call::Deliver => {
                http.post(&format!("/commands/orders/{order}/deliver"), json!(null))
                    .await
            }
            Call::CancelPending | Call::CancelShipped => {
                let body = json!({"reason": "matrix"});
                http.post(&format!("/commands/orders/{order}/cancel"), body)
                    .await
            }
            Call::GetOrder => http.get(&format!("/queries/orders/{order}")).await,
            Call::ListOrders => http.get("/queries/orders").await,
            Call::ListOwnersOrders => http.get(&format!("/queries/orders?user_id={owner}")).await,
            Call::GetPayment => http.get(&format!("/payments/{}", target.payment)).await,
            Call::ListPayments => http.get(&format!("/payments?order_id={order}")).await,
            Call::Projections => http.get("/admin/projections").await,
            Call::Rebuild => {
                http.post("/admin/projections/orders_read/rebuild", json!(null))
                    .await
            }
        }
    }

    /// Waits until every subscriber has caught up and no rebuild runs, so that only a
    /// request can change the database.
    async fn settle(&self) {
        crate::wait_for("the subscribers to catch up", async || {
            let status = self.app.http.get("/admin/projections").await;
            status.body["projections"].as_array().is_some_and(|all| {
                all.iter()
                    .all(|p| p["lag_events"] == 0 && p["status"] != "rebuilding")
            })
        })
        .await;
    }

    /// A digest of every module's state and event log.
    async fn digest(&self) -> String {
        #[derive(diesel::QueryableByName)]
        struct Digest {
            #[diesel(sql_type = Text)]
            digest: String,
        }
        let rows = [
            "orders.orders",
            "products.products",
            "payments.payments",
            "users.users",
        ]
        .map(|table| format!("(SELECT string_agg(t::text, ',' ORDER BY t::text) FROM {table} t)"));
        let logs = ["orders", "products", "payments", "users"]
            .map(|schema| format!("(SELECT count(*) FROM {schema}.events)::text"));
        let sql = format!(
            "SELECT md5(concat_ws('|', {}, {}, (SELECT count(*) FROM gateway.ledger)::text)) AS digest",
            rows.join(", "),
            logs.join(", ")
        );
        let digest: Digest = diesel::sql_query(sql)
            .get_result(&mut self.app.db.connect().await)
            .await
            .unwrap();
        digest.digest
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_caller_as_the_contract_says() {
    let config = |url: &str| Config {
        admin_token: Some(ADMIN_TOKEN.to_owned()),
        ..Config::for_database(url)
    };
    let app = spawn_with(crate::database().await, config, Hooks::default()).await;
    let owner = app.user("owner@example.com").await;
    let other = app.user("other@example.com").await;
    let inactive = app.user("inactive@example.com").await;
    let deactivated = app
        .http
        .patch(&format!("/users/{inactive}"), json!({"active": false}))
        .await;
    assert_eq!(deactivated.status, 200, "{:#}", deactivated.body);
    let product = app.product("Lamp", "12.50", 1000).await;
    let now = chrono::Utc::now().timestamp();
    let forged = async |changes: Value, other_key: bool| {
        let token =
            users::testing::forge(&mut app.db.connect().await, &owner, changes, other_key).await;
        app.http.anonymous().with_bearer(&token)
    };
    let callers: [Http; 13] = [
        app.http.anonymous(),
        app.as_user(&owner),
        app.as_user(&other),
        app.as_user(&inactive),
        app.as_staff(&[Role::Catalog]).await,
        app.as_staff(&[Role::Fulfilment]).await,
        app.as_staff(&[Role::Support]).await,
        app.as_staff(&[Role::Admin]).await,
        app.http.anonymous().with_bearer(ADMIN_TOKEN),
        forged(json!({"iat": now - 1200, "exp": now - 600}), false).await,
        forged(json!({}), true).await,
        forged(json!({"aud": "elsewhere"}), false).await,
        app.http.anonymous().with_authorization("Bearer not.a.jwt"),
    ];
    let shop = Shop {
        app,
        owner,
        product,
    };

    let mut wrong = Vec::new();
    for (call, answers) in TABLE {
        let mut target = shop.target(call).await;
        for (caller, (http, expected)) in CALLERS.iter().zip(callers.iter().zip(answers)) {
            shop.settle().await;
            let before = shop.digest().await;
            let answer = shop.send(http, call, &target).await;
            let allowed = (200..300).contains(&answer.status) && expected != HIDDEN;
            let got = match answer.status {
                200 if answer.body["payments"] == json!([]) => HIDDEN,
                status => status,
            };
            if got != expected {
                wrong.push(format!(
                    "{call:?} as {caller}: {got}, not {expected}: {}",
                    answer.body
                ));
            }
            if allowed {
                if call.changes_its_order() {
                    target = shop.target(call).await;
                }
                continue;
            }
            if answer.status >= 400 {
                assert!(
                    answer.header("content-type") == Some("application/problem+json"),
                    "{call:?} as {caller}: {:?}",
                    answer.header("content-type")
                );
            }
            if answer.status == 401 {
                assert!(
                    answer.header("www-authenticate").is_some(),
                    "{call:?} as {caller}: no WWW-Authenticate"
                );
            }
            shop.settle().await;
            if shop.digest().await != before {
                wrong.push(format!(
                    "{call:?} as {caller} was refused ({got}) but changed the database"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells differ from the table:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
