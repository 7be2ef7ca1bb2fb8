//! The load of a chaos round: drivers sending a concurrent, random mix of every command
//! (orders placed, confirmed with every gateway token, shipped, delivered, cancelled;
//! restocks; renames) until told to stop, each request to an instance picked at random
//! among those serving ([`Instances`], as a load balancer would).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::Shop;
use crate::load::Rng;

/// The tokens confirms pay with, as often as they appear: mostly cards that pay, and each
/// way a gateway fails. The slow ones are answered only after the gateway deadline, so
/// their calls are in flight when a kill lands.
const TOKENS: [&str; 8] = [
    "tok_visa",
    "tok_visa",
    "tok_visa",
    "tok_declined",
    "tok_gateway_error",
    "tok_timeout",
    "tok_timeout",
    "tok_timeout_failed",
];
const SLOW_TOKENS: [&str; 2] = ["tok_timeout", "tok_timeout_failed"];

/// What the drivers of a round did.
#[derive(Default)]
pub(super) struct Counts {
    pub(super) sent: AtomicU64,
    /// Connection lost, `503`, or a `5xx` bug.
    pub(super) failed: AtomicU64,
    /// Confirms with a slow token.
    pub(super) slow: AtomicU64,
}

/// The instances of a round as the load sees them: each one's base URL while it serves,
/// and the requests sent to each.
pub(super) struct Instances {
    /// By instance number; `None` while it is down (killed, not yet started again).
    serving: Mutex<Vec<Option<String>>>,
    sent: Vec<AtomicU64>,
}

impl Instances {
    pub(super) fn new(bases: Vec<String>) -> Instances {
        Instances {
            sent: bases.iter().map(|_| AtomicU64::new(0)).collect(),
            serving: Mutex::new(bases.into_iter().map(Some).collect()),
        }
    }

    /// One of those serving, at random, counted as sent to; `None` while none serves.
    fn pick(&self, rng: &mut Rng) -> Option<String> {
        let serving = self.serving.lock().unwrap_or_else(|e| e.into_inner());
        let up: Vec<usize> = (0..serving.len())
            .filter(|&i| serving[i].is_some())
            .collect();
        if up.is_empty() {
            return None;
        }
        let instance = up[rng.below(up.len())];
        self.sent[instance].fetch_add(1, Ordering::Relaxed);
        serving[instance].clone()
    }

    /// Instance `instance` is down: no request goes to it any more.
    pub(super) fn down(&self, instance: usize) {
        self.serving.lock().unwrap_or_else(|e| e.into_inner())[instance] = None;
    }

    /// Instance `instance` serves (again) at `base`.
    pub(super) fn up(&self, instance: usize, base: String) {
        self.serving.lock().unwrap_or_else(|e| e.into_inner())[instance] = Some(base);
    }

    /// The base URL of each instance serving, by instance number.
    pub(super) fn serving(&self) -> Vec<String> {
        let serving = self.serving.lock().unwrap_or_else(|e| e.into_inner());
        serving.iter().flatten().cloned().collect()
    }

    /// Requests sent to each instance so far, by instance number.
    pub(super) fn sent(&self) -> Vec<u64> {
        self.sent.iter().map(|n| n.load(Ordering::SeqCst)).collect()
    }
}

/// One load driver: random commands, each to an instance serving, until told to stop.
/// Failures are expected (a server dies under it); they are counted, not fatal. While no
/// instance serves it waits.
pub(super) async fn drive(
    instances: Arc<Instances>,
    shop: Arc<Shop>,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    while !stop.load(Ordering::SeqCst) {
        let Some(base) = instances.pick(&mut rng) else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        counts.sent.fetch_add(1, Ordering::Relaxed);
        let pick = rng.next() % 100;
        let orders_known = shop.orders.lock().await.len();
        let result = if pick < 35 || orders_known == 0 {
            let who = rng.below(shop.users.len());
            let (a, b) = (
                rng.below(shop.products.len()),
                rng.below(shop.products.len()),
            );
            let mut items =
                vec![json!({"product_id": shop.products[a], "quantity": 1 + rng.below(3)})];
            if a != b && rng.next().is_multiple_of(2) {
                items.push(json!({"product_id": shop.products[b], "quantity": 1 + rng.below(2)}));
            }
            // Mostly the customer, with their own token; now and then support, for them.
            let (token, body) = if rng.next().is_multiple_of(4) {
                let user = &shop.users[who];
                (&shop.staff, json!({"user_id": user, "items": items}))
            } else {
                (&shop.tokens[who], json!({"items": items}))
            };
            let placed = post(&http, &base, token, "/commands/orders", body).await;
            if let Ok((202, body)) = &placed
                && let Ok(order) = id(body, "order_id")
            {
                shop.orders.lock().await.push((order, who));
            }
            placed.map(|_| ())
        } else if pick < 92 {
            let (order, owner) = {
                let orders = shop.orders.lock().await;
                orders[rng.below(orders.len())].clone()
            };
            // The owner pays; staff ship, deliver and cancel (a customer may not cancel
            // a shipped order).
            let (command, body, token) = match pick {
                35..=56 => {
                    let token = TOKENS[rng.below(TOKENS.len())];
                    if SLOW_TOKENS.contains(&token) {
                        counts.slow.fetch_add(1, Ordering::Relaxed);
                    }
                    let body = json!({"payment_token": token});
                    ("confirm", body, &shop.tokens[owner])
                }
                57..=71 => ("ship", json!({}), &shop.staff),
                72..=80 => ("deliver", json!({}), &shop.staff),
                _ => ("cancel", json!({"reason": "chaos"}), &shop.staff),
            };
            post(
                &http,
                &base,
                token,
                &format!("/commands/orders/{order}/{command}"),
                body,
            )
            .await
            .map(|_| ())
        } else if pick < 96 {
            let product = &shop.products[rng.below(shop.products.len())];
            post(
                &http,
                &base,
                &shop.staff,
                &format!("/products/{product}/restock"),
                json!({"quantity": 1 + rng.below(5)}),
            )
            .await
            .map(|_| ())
        } else {
            let who = rng.below(shop.users.len());
            let url = format!("{base}/users/{}", shop.users[who]);
            http.patch(url)
                .bearer_auth(&shop.tokens[who])
                .json(&json!({"name": format!("Renamed {}", rng.next() % 1000)}))
                .send()
                .await
                .map_err(Into::into)
                .and_then(|answer| match answer.status().as_u16() {
                    401 | 403 => anyhow::bail!("a customer's rename of itself was refused"),
                    _ => Ok(()),
                })
        };
        if result.is_err() {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `POST path` with the bearer `token` (empty: none): its status and JSON answer. A `5xx`
/// is an error, but for the answers the contract gives the gateway's tokens: `502
/// payment_gateway_error`, `504 payment_pending`; so is a `401` or `403` (every driver
/// calls as someone allowed to).
pub(super) async fn post(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: Value,
) -> Result<(u16, Value)> {
    let mut request = http.post(format!("{base}{path}")).json(&body);
    if !token.is_empty() {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let answer = response.json().await.unwrap_or(Value::Null);
    if matches!(status, 401 | 403) {
        bail!("POST {path} was refused ({status}): {answer}");
    }
    let expected = matches!(
        (status, answer["code"].as_str()),
        (502, Some("payment_gateway_error")) | (504, Some("payment_pending"))
    );
    if status >= 500 && !expected {
        bail!("POST {path} answered {status}: {answer}");
    }
    Ok((status, answer))
}

pub(super) fn id(body: &Value, field: &str) -> Result<String> {
    body[field]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no {field} in {body}"))
}
