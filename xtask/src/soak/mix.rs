//! The soak's traffic: a weighted mix of every kind of request that grows a table meant to
//! stay bounded or holds memory in the server, each answer checked against what the
//! contract allows that request. Customers log in (some with a wrong password, some as
//! nobody), refresh and revoke their tokens, register, place orders with an
//! `Idempotency-Key` (and replay some keys), confirm them (`tok_visa`, now and then
//! `tok_declined`), cancel them, and read them back by id with `min_version` and by page;
//! anyone reads products.
//!
//! A request is planned ([`Shop::call`], synchronous: it picks from what earlier answers
//! left, so an open-loop driver can plan on its own task) and then sent
//! ([`Shop::execute`]), which records its latency and outcome in the [`Recorder`].

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use reqwest::Method;
use serde_json::{Value, json};

use super::sample::Recorder;
use crate::load::{Api, Rng};
use crate::seed::{USER_PASSWORD, user_email};

/// One kind of request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    ProductById,
    ProductPage,
    Register,
    LogIn,
    WrongPassword,
    Refresh,
    Revoke,
    Me,
    Place,
    Replay,
    Confirm,
    Cancel,
    OrderById,
    OrderPage,
}

/// The mix: each kind of request and how many of every 100 are of it. A kind that finds
/// nothing to work on (no order to confirm yet, no refresh token young enough) is sent as
/// the kind that makes some (a placement, a login) instead.
pub(super) const MIX: [(Op, usize); 14] = [
    (Op::ProductById, 12),
    (Op::ProductPage, 5),
    (Op::Register, 2),
    (Op::LogIn, 4),
    (Op::WrongPassword, 4),
    (Op::Refresh, 8),
    (Op::Revoke, 2),
    (Op::Me, 3),
    (Op::Place, 16),
    (Op::Replay, 4),
    (Op::Confirm, 10),
    (Op::Cancel, 6),
    (Op::OrderById, 16),
    (Op::OrderPage, 8),
];

impl Op {
    /// Its route, as the report names it.
    pub(super) fn route(self) -> &'static str {
        match self {
            Op::ProductById => "GET /products/{id}",
            Op::ProductPage => "GET /products",
            Op::Register => "POST /users",
            Op::LogIn => "POST /auth/token (password)",
            Op::WrongPassword => "POST /auth/token (wrong password)",
            Op::Refresh => "POST /auth/token (refresh_token)",
            Op::Revoke => "POST /auth/revoke",
            Op::Me => "GET /users/me",
            Op::Place => "POST /commands/orders",
            Op::Replay => "POST /commands/orders (replayed key)",
            Op::Confirm => "POST /commands/orders/{id}/confirm",
            Op::Cancel => "POST /commands/orders/{id}/cancel",
            Op::OrderById => "GET /queries/orders/{id}?min_version",
            Op::OrderPage => "GET /queries/orders",
        }
    }

    /// The answers the contract gives it here: a `429` to a login of an email locked by
    /// wrong passwords, a `402` to `tok_declined`, a `409` to a command on an order the
    /// sweeper expired meanwhile, a `404` to a read the projection has not reached within
    /// the `min_version` wait (counted as stale).
    fn expected(self) -> &'static [u16] {
        match self {
            Op::Register => &[201],
            Op::LogIn => &[200, 429],
            Op::WrongPassword => &[401, 429],
            Op::Revoke => &[204],
            Op::Place | Op::Replay => &[202],
            Op::Confirm => &[202, 402, 409],
            Op::Cancel => &[202, 409],
            Op::OrderById => &[200, 404],
            _ => &[200],
        }
    }
}

/// At most this many of each kind of thing are kept to work on; the oldest go first.
const KEEP: usize = 1000;

/// The shop the mix works on, and what earlier answers left to work on.
pub(super) struct Shop {
    api: Api,
    products: Vec<String>,
    /// Seeded customers' ids; user `i` is `load::user_email(i)`.
    customers: Vec<String>,
    /// `IDEMPOTENCY_TTL` and `REFRESH_TOKEN_TTL`: a key is replayed, a refresh token used,
    /// only while younger than half of it.
    ttl: Duration,
    serial: AtomicU64,
    state: Mutex<State>,
    pub(super) recorder: Recorder,
}

#[derive(Default)]
struct State {
    /// An access token of each customer.
    tokens: Vec<String>,
    /// Refresh tokens not used yet, oldest first, with their customer.
    refresh: VecDeque<(String, usize, Instant)>,
    pending: VecDeque<Order>,
    confirmed: VecDeque<Order>,
    /// Orders to read back, at the version their last command answered.
    recent: VecDeque<Order>,
    /// Placements to replay, oldest first.
    keys: VecDeque<Placement>,
}

#[derive(Clone)]
struct Order {
    id: String,
    owner: usize,
    version: i64,
}

#[derive(Clone)]
struct Placement {
    key: String,
    body: Value,
    owner: usize,
    /// The order its first answer named (empty until then).
    order: String,
    at: Instant,
}

/// A planned request.
pub(super) struct Call {
    op: Op,
    method: Method,
    path: String,
    token: Option<String>,
    key: Option<String>,
    body: Option<Value>,
    then: Then,
}

/// What an accepted answer leaves to work on.
enum Then {
    Nothing,
    /// Customer `i`'s new tokens.
    Session(usize),
    Placed(Placement),
    /// The order the replayed key must answer again.
    Replayed(String),
    Confirmed(Order),
}

fn keep<T>(queue: &mut VecDeque<T>, item: T) {
    queue.push_back(item);
    if queue.len() > KEEP {
        queue.pop_front();
    }
}

impl Shop {
    /// Logs every seeded customer in (user `i` of `customers` is `load::user_email(i)`).
    pub(super) async fn open(
        api: &Api,
        customers: Vec<String>,
        products: Vec<String>,
        ttl: Duration,
    ) -> Result<Shop> {
        let mut state = State::default();
        for i in 0..customers.len() {
            let login = json!({"grant_type": "password", "email": user_email(i), "password": USER_PASSWORD});
            let (status, tokens) = api.post("/auth/token", &login).await?;
            ensure!(status == 200, "logging customer {i} in: {status} {tokens}");
            let token = |field: &str| tokens[field].as_str().map(str::to_owned);
            state
                .tokens
                .push(token("access_token").context("no access token")?);
            let refresh = token("refresh_token").context("no refresh token")?;
            state.refresh.push_back((refresh, i, Instant::now()));
        }
        Ok(Shop {
            api: api.clone(),
            products,
            customers,
            ttl,
            serial: AtomicU64::new(0),
            state: Mutex::new(state),
            recorder: Recorder::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next(&self) -> u64 {
        self.serial.fetch_add(1, Ordering::Relaxed)
    }

    /// The next request: a kind drawn from [`MIX`], and what it works on.
    pub(super) fn call(&self, rng: &mut Rng) -> Call {
        let mut pick = rng.below(100);
        let op = MIX
            .iter()
            .find(|(_, weight)| {
                let this = pick < *weight;
                pick = pick.saturating_sub(*weight);
                this
            })
            .map_or(Op::ProductById, |(op, _)| *op);
        self.plan(op, rng)
    }

    fn plan(&self, op: Op, rng: &mut Rng) -> Call {
        let call = |method, path: String| Call {
            op,
            method,
            path,
            token: None,
            key: None,
            body: None,
            then: Then::Nothing,
        };
        let who = rng.below(self.customers.len());
        let token = Some(self.state().tokens[who].clone());
        let young = Instant::now() - self.ttl / 2;
        match op {
            Op::ProductById => {
                let product = rng.pick(&self.products);
                call(Method::GET, format!("/products/{product}"))
            }
            Op::ProductPage => call(
                Method::GET,
                format!("/products?page={}&page_size=20", 1 + rng.below(3)),
            ),
            Op::Register => {
                let n = self.next();
                let body = json!({"email": format!("new{n}@soak.example"), "name": format!("Soak {n}"), "password": USER_PASSWORD});
                Call {
                    body: Some(body),
                    ..call(Method::POST, "/users".to_owned())
                }
            }
            Op::LogIn | Op::WrongPassword => {
                let (email, password, then) = match op {
                    Op::LogIn => (user_email(who), USER_PASSWORD, Then::Session(who)),
                    // Half of them at a customer (who may get locked), half at nobody.
                    _ if rng.below(2) == 0 => (user_email(who), "not the password", Then::Nothing),
                    _ => (
                        format!("nobody{}@soak.example", self.next()),
                        "any",
                        Then::Nothing,
                    ),
                };
                let body = json!({"grant_type": "password", "email": email, "password": password});
                Call {
                    body: Some(body),
                    then,
                    ..call(Method::POST, "/auth/token".to_owned())
                }
            }
            Op::Refresh | Op::Revoke => {
                let fresh = {
                    let mut state = self.state();
                    while state.refresh.front().is_some_and(|(_, _, at)| *at < young) {
                        state.refresh.pop_front();
                    }
                    state.refresh.pop_back()
                };
                let Some((refresh, owner, _)) = fresh else {
                    return self.plan(Op::LogIn, rng);
                };
                let (path, body, then) = match op {
                    Op::Refresh => (
                        "/auth/token",
                        json!({"grant_type": "refresh_token", "refresh_token": refresh}),
                        Then::Session(owner),
                    ),
                    _ => (
                        "/auth/revoke",
                        json!({"refresh_token": refresh}),
                        Then::Nothing,
                    ),
                };
                Call {
                    body: Some(body),
                    then,
                    ..call(Method::POST, path.to_owned())
                }
            }
            Op::Me => Call {
                token,
                ..call(Method::GET, "/users/me".to_owned())
            },
            Op::Place => {
                let items = self.items(rng);
                let placement = Placement {
                    key: format!("soak-{}", self.next()),
                    body: json!({ "items": items }),
                    owner: who,
                    order: String::new(),
                    at: Instant::now(),
                };
                Call {
                    token,
                    key: Some(placement.key.clone()),
                    body: Some(placement.body.clone()),
                    then: Then::Placed(placement),
                    ..call(Method::POST, "/commands/orders".to_owned())
                }
            }
            Op::Replay => {
                let replay = {
                    let state = self.state();
                    let first = state.keys.partition_point(|p| p.at < young);
                    (first < state.keys.len())
                        .then(|| state.keys[first + rng.below(state.keys.len() - first)].clone())
                };
                let Some(placement) = replay else {
                    return self.plan(Op::Place, rng);
                };
                Call {
                    token: Some(self.state().tokens[placement.owner].clone()),
                    key: Some(placement.key),
                    body: Some(placement.body),
                    then: Then::Replayed(placement.order),
                    ..call(Method::POST, "/commands/orders".to_owned())
                }
            }
            Op::Confirm | Op::Cancel => {
                let order = {
                    let mut state = self.state();
                    match op {
                        Op::Cancel if rng.below(2) == 0 && !state.confirmed.is_empty() => {
                            state.confirmed.pop_back()
                        }
                        _ => state.pending.pop_back(),
                    }
                };
                let Some(order) = order else {
                    return self.plan(Op::Place, rng);
                };
                let (command, body, then) = match op {
                    Op::Confirm => {
                        let card = if rng.below(10) == 0 {
                            "tok_declined"
                        } else {
                            "tok_visa"
                        };
                        let body = json!({ "payment_token": card });
                        ("confirm", body, Then::Confirmed(order.clone()))
                    }
                    _ => ("cancel", json!({"reason": "soak"}), Then::Nothing),
                };
                let path = format!("/commands/orders/{}/{command}", order.id);
                Call {
                    token: Some(self.state().tokens[order.owner].clone()),
                    body: Some(body),
                    then,
                    ..call(Method::POST, path)
                }
            }
            Op::OrderById => {
                let order = {
                    let state = self.state();
                    (!state.recent.is_empty())
                        .then(|| state.recent[rng.below(state.recent.len())].clone())
                };
                let Some(order) = order else {
                    return self.plan(Op::ProductById, rng);
                };
                let path = format!("/queries/orders/{}?min_version={}", order.id, order.version);
                Call {
                    token: Some(self.state().tokens[order.owner].clone()),
                    ..call(Method::GET, path)
                }
            }
            Op::OrderPage => {
                let user = &self.customers[who];
                let path = format!("/queries/orders?user_id={user}&page=1&page_size=20");
                Call {
                    token,
                    ..call(Method::GET, path)
                }
            }
        }
    }

    /// One to three distinct products, one to three of each.
    fn items(&self, rng: &mut Rng) -> Vec<Value> {
        let mut items: Vec<Value> = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let product = rng.pick(&self.products);
            if items.iter().all(|item| item["product_id"] != product) {
                items.push(json!({"product_id": product, "quantity": 1 + rng.below(3)}));
            }
        }
        items
    }

    /// Sends `call`, records its latency and outcome, and keeps what its answer leaves to
    /// work on.
    pub(super) async fn execute(&self, call: Call) {
        let route = call.op.route();
        let started = Instant::now();
        let answer = self.send(&call).await;
        let latency = started.elapsed();
        let (status, body, stale) = match answer {
            Ok(answer) => answer,
            Err(error) => return self.recorder.failed(route, None, format!("{error:#}")),
        };
        if !call.op.expected().contains(&status) {
            let message = format!("{} {} answered {status}: {body}", call.method, call.path);
            return self.recorder.failed(route, Some(latency), message);
        }
        match self.keep(call.then, status, &body) {
            Ok(()) => {
                let stale = call.op == Op::OrderById && (stale || status == 404);
                self.recorder.answered(route, latency, stale);
            }
            Err(error) => self
                .recorder
                .failed(route, Some(latency), format!("{error:#}")),
        }
    }

    async fn send(&self, call: &Call) -> Result<(u16, Value, bool)> {
        let mut request = self.api.request(call.method.clone(), &call.path);
        if let Some(token) = &call.token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = &call.key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{} {}", call.method, call.path))?;
        let status = response.status().as_u16();
        let stale = response
            .headers()
            .get("x-read-model-stale")
            .is_some_and(|value| value == "true");
        let body = response.bytes().await.unwrap_or_default();
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok((status, body, stale))
    }

    /// What an accepted answer (`status`, `body`) leaves to work on.
    fn keep(&self, then: Then, status: u16, body: &Value) -> Result<()> {
        let field = |name: &str| {
            body[name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("no {name} in {body}"))
        };
        let version = body["version"].as_i64().unwrap_or(1);
        let mut state = self.state();
        match then {
            Then::Session(who) if status == 200 => {
                state.tokens[who] = field("access_token")?;
                keep(
                    &mut state.refresh,
                    (field("refresh_token")?, who, Instant::now()),
                );
            }
            Then::Placed(mut placement) => {
                placement.order = field("order_id")?;
                let order = Order {
                    id: placement.order.clone(),
                    owner: placement.owner,
                    version,
                };
                keep(&mut state.pending, order.clone());
                keep(&mut state.recent, order);
                keep(&mut state.keys, placement);
            }
            Then::Replayed(order) => {
                let again = field("order_id")?;
                ensure!(
                    again == order,
                    "a replayed Idempotency-Key answered order {again}, not {order}"
                );
            }
            Then::Confirmed(order) if status == 202 => {
                let order = Order { version, ..order };
                keep(&mut state.confirmed, order.clone());
                keep(&mut state.recent, order);
            }
            _ => {}
        }
        Ok(())
    }
}
