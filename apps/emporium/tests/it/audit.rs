//! The audit trail: every event names who caused it (`actor`) and the request that did
//! (`correlation_id`), and the steps other modules take because of it keep that request's
//! id; the system's own work (expiry) is `system` with none.

use kernel::testing::Http;
use serde_json::{Value, json};

use crate::TestApp;

/// POSTs `body` to `path` as `http` with `X-Request-Id: request_id`; answers the body of
/// a success.
async fn post_as_request(http: &Http, request_id: &str, path: &str, body: Value) -> Value {
    let response = send(http, request_id, path, body).await;
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

async fn send(http: &Http, request_id: &str, path: &str, body: Value) -> reqwest::Response {
    http.request("POST", path)
        .header("X-Request-Id", request_id)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// One event as the trail shows it: `(event_type, actor_kind, actor_id, correlation_id)`.
type Step = (String, String, Option<String>, Option<String>);

/// Every event of `schema`'s log, in log order.
async fn trail(app: &TestApp, schema: &str) -> Vec<Step> {
    use diesel::sql_types::{Nullable, Text};
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        event_type: String,
        #[diesel(sql_type = Text)]
        actor_kind: String,
        #[diesel(sql_type = Nullable<Text>)]
        actor_id: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        correlation_id: Option<String>,
    }
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT event_type, actor_kind, actor_id::text AS actor_id, correlation_id \
         FROM {schema}.events ORDER BY xid, seq"
    ))
    .load(&mut app.db.connect().await)
    .await
    .unwrap();
    rows.into_iter()
        .map(|r| (r.event_type, r.actor_kind, r.actor_id, r.correlation_id))
        .collect()
}

fn step(event: &str, kind: &str, actor: Option<&str>, correlation: Option<&str>) -> Step {
    (
        event.into(),
        kind.into(),
        actor.map(Into::into),
        correlation.map(Into::into),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_names_its_cause_and_the_steps_it_caused_keep_its_request_id() {
    // The cancel stops after its own transaction, so the saga takes the refund.
    let stop_after_cancel: orders::FaultHook = std::sync::Arc::new(|point| match point {
        "after_cancel" => anyhow::bail!("stopped at {point}"),
        _ => Ok(()),
    });
    let app = crate::spawn_on(
        crate::database().await,
        emporium::Hooks {
            faults: Some(stop_after_cancel),
            ..emporium::Hooks::default()
        },
    )
    .await;
    let anonymous = app.http.anonymous();
    let user = post_as_request(
        &anonymous,
        "req-register",
        "/users",
        json!({"email": "audited@example.com", "name": "Audited", "password": crate::PASSWORD}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let customer = app
        .http
        .with_bearer(&app.login("audited@example.com").await);
    let staff = app.http.get("/users/me").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let product = app.product("Lamp", "10.00", 5).await;
    let placed = post_as_request(
        &customer,
        "req-place",
        "/commands/orders",
        json!({"items": [{"product_id": product, "quantity": 2}]}),
    )
    .await;
    let order = placed["order_id"].as_str().unwrap().to_owned();
    post_as_request(
        &customer,
        "req-confirm",
        &format!("/commands/orders/{order}/confirm"),
        json!({"payment_token": "tok_visa"}),
    )
    .await;
    // Support's cancel: a staff action, named in the trail.
    let cancel = send(
        &app.http,
        "req-cancel",
        &format!("/commands/orders/{order}/cancel"),
        json!({"reason": "audit"}),
    )
    .await;
    assert_eq!(
        cancel.status(),
        500,
        "the fault stops the request after its commit"
    );
    crate::wait_for("the refund", async || {
        app.db
            .scalar(
                "SELECT count(*) AS n FROM payments.events WHERE event_type = 'payment.refunded'",
            )
            .await
            == 1
    })
    .await;

    // A registration is anonymous: a `user` with no id.
    let users = trail(&app, "users").await;
    assert!(
        users.contains(&step("user.registered", "user", None, Some("req-register"))),
        "{users:?}"
    );
    // An authenticated caller is named: the user renames itself with its token.
    let renamer = app.user("renamer@example.com").await;
    let renamed = app
        .as_user(&renamer)
        .request("PATCH", &format!("/users/{renamer}"))
        .header("X-Request-Id", "req-rename")
        .json(&json!({"name": "Renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    let named = app
        .db
        .scalar(&format!(
            "SELECT count(*) AS n FROM users.events WHERE event_type = 'user.updated' \
             AND actor_kind = 'user' AND actor_id = '{renamer}' AND correlation_id = 'req-rename'"
        ))
        .await;
    assert_eq!(named, 1, "user.updated names the user who made it");
    // The confirm is the request's step, or the saga's when it saw the capture before the
    // request went on to confirm: then the system's, for the same request.
    let orders = trail(&app, "orders").await;
    let confirmed = [
        step("order.confirmed", "user", Some(&user), Some("req-confirm")),
        step("order.confirmed", "system", None, Some("req-confirm")),
    ];
    assert_eq!(orders.len(), 3, "{orders:?}");
    assert_eq!(
        orders[0],
        step("order.created", "user", Some(&user), Some("req-place"))
    );
    assert!(confirmed.contains(&orders[1]), "{orders:?}");
    assert_eq!(
        orders[2],
        step("order.cancelled", "user", Some(&staff), Some("req-cancel"))
    );
    // The refund is the cancel's step (whether the request or the saga took it), or the
    // capture's when the saga saw the capture only after the cancel (a slow machine): it
    // then refunds a cancelled order's payment as that event's step.
    let payments = trail(&app, "payments").await;
    assert_eq!(
        payments[0],
        step("payment.captured", "user", Some(&user), Some("req-confirm"))
    );
    assert_eq!(payments[1].0, "payment.refunded");
    assert!(
        matches!(payments[1].3.as_deref(), Some("req-cancel" | "req-confirm")),
        "{payments:?}"
    );
    // Stock moves of the products module, caused by the same requests.
    let products = trail(&app, "products").await;
    assert!(
        products
            .iter()
            .all(|(_, _, _, correlation)| correlation.is_some()),
        "{products:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systems_own_work_is_the_system_with_no_request() {
    let app = crate::spawn_with(
        crate::database().await,
        |url| emporium::Config {
            order_expiry: std::time::Duration::ZERO,
            ..emporium::Config::for_database(url)
        },
        emporium::Hooks::default(),
    )
    .await;
    let user = app.user("late@example.com").await;
    let product = app.product("Lamp", "10.00", 5).await;
    let order = app.placed(&user, &[(&product, 1)]).await;
    crate::wait_for("the expiry", async || {
        app.db
            .scalar(&format!(
                "SELECT count(*) AS n FROM orders.events WHERE event_type = 'order.cancelled' AND aggregate_id = '{order}'"
            ))
            .await
            == 1
    })
    .await;
    let orders = trail(&app, "orders").await;
    assert_eq!(orders[1], step("order.cancelled", "system", None, None));
}
