//! The little data the fuzzer's requests find: an admin (whose access token schemathesis
//! sends), customers, products, and orders in every status with their payments, all made
//! through the API. Their ids go to `target/fuzz/seed.json`, where the hooks
//! (`xtask/fuzz/hooks.py`) read them to put real ids into some generated requests.

use anyhow::{Context, Result, ensure};
use reqwest::Method;
use serde_json::{Value, json};

use crate::load::{Api, id};

pub(crate) const ADMIN_EMAIL: &str = "admin@fuzz.example";
pub(crate) const ADMIN_PASSWORD: &str = "fuzz admin password";

/// How many of each; orders go through every status.
const CUSTOMERS: usize = 4;
/// Products orders are placed for: the hooks give each line of a generated order another
/// one, so there are as many as an order may have lines. They stay as seeded (cheap, in
/// ample stock); the fuzzer changes only [`TARGET_PRODUCTS`].
const ORDER_PRODUCTS: usize = 100;
/// Products the fuzzer's `/products/{id}` requests reach.
const TARGET_PRODUCTS: usize = 4;

/// What was seeded.
pub(crate) struct Seeded {
    /// The admin's access token.
    pub(crate) admin: String,
    pub(crate) admin_id: String,
    /// The ids, for the hooks.
    pub(crate) ids: Value,
}

pub(crate) async fn seed(api: &Api, admin_token: &str) -> Result<Seeded> {
    let admin_id = register(api, ADMIN_EMAIL, "Fuzz Admin", ADMIN_PASSWORD).await?;
    let (status, body) = send(
        api,
        Method::PUT,
        &format!("/users/{admin_id}/roles"),
        admin_token,
        Some(json!({"roles": ["admin"]})),
    )
    .await?;
    ensure!(status == 200, "granting admin answered {status}: {body}");
    let login = json!({"grant_type": "password", "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
    let admin = id(
        &api.expect("/auth/token", &login, 200).await?,
        "access_token",
    )?;

    let mut users = Vec::new();
    for i in 0..CUSTOMERS {
        let email = format!("customer{i}@fuzz.example");
        users.push(register(api, &email, &format!("Customer {i}"), "customer password").await?);
    }
    let mut products = Vec::new();
    for i in 0..ORDER_PRODUCTS + TARGET_PRODUCTS {
        let body = json!({"name": format!("Product {i}"), "description": "seeded by cargo xtask fuzz",
            "price": "1.25", "stock": 1_000_000_000});
        let (status, answer) = send(api, Method::POST, "/products", &admin, Some(body)).await?;
        ensure!(status == 201, "POST /products answered {status}: {answer}");
        products.push(id(&answer, "id")?);
    }
    let targets = products.split_off(ORDER_PRODUCTS);

    let lifecycles: [&[&str]; 6] = [
        &[],
        &["confirm"],
        &["confirm", "ship"],
        &["confirm", "ship", "deliver"],
        &["cancel"],
        &["confirm", "cancel"],
    ];
    let (mut orders, mut payments) = (Vec::new(), Vec::new());
    for (i, steps) in lifecycles.iter().cycle().take(12).enumerate() {
        let body = json!({"user_id": users[i % users.len()],
            "items": [{"product_id": products[i], "quantity": 1 + i % 3}]});
        let (status, answer) =
            send(api, Method::POST, "/commands/orders", &admin, Some(body)).await?;
        ensure!(
            status == 202,
            "placing an order answered {status}: {answer}"
        );
        let order = id(&answer, "order_id")?;
        for step in *steps {
            let body = match *step {
                "confirm" => Some(json!({"payment_token": "tok_visa"})),
                "cancel" => Some(json!({"reason": "seeded"})),
                _ => None,
            };
            let path = format!("/commands/orders/{order}/{step}");
            let (status, answer) = send(api, Method::POST, &path, &admin, body).await?;
            ensure!(status == 202, "POST {path} answered {status}: {answer}");
        }
        let path = format!("/payments?order_id={order}");
        let (status, answer) = send(api, Method::GET, &path, &admin, None).await?;
        ensure!(status == 200, "GET {path} answered {status}: {answer}");
        for payment in answer["payments"].as_array().into_iter().flatten() {
            payments.push(id(payment, "id")?);
        }
        orders.push(order);
    }
    ensure!(!payments.is_empty(), "no order was paid");
    let ids = json!({"users": users, "products": targets, "order_products": products,
        "orders": orders, "payments": payments});
    Ok(Seeded {
        admin,
        admin_id,
        ids,
    })
}

async fn register(api: &Api, email: &str, name: &str, password: &str) -> Result<String> {
    let body = json!({"email": email, "name": name, "password": password});
    id(&api.expect("/users", &body, 201).await?, "id")
}

/// `method path` with `token` as the bearer and `body` as JSON; the status and the answer.
async fn send(
    api: &Api,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let mut request = api.request(method.clone(), path).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("{method} {path}"))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}
