//! The load `cargo xtask bench` and `soak` drive in Rust where wrk does not fit (see
//! `bench/`): the API client, seeding, an open-loop (rate-limited) driver, a placement
//! load with projection lag probes on top, and a read-model rebuild.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

/// The emporium API over HTTP/1.1 keep-alive.
#[derive(Clone)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    admin_token: String,
    /// The staff member's access token every request carries, once [`Api::log_in_staff`]
    /// has run.
    bearer: Arc<std::sync::OnceLock<String>>,
}

impl Api {
    pub(crate) fn new(address: &str, admin_token: &str) -> Result<Api> {
        // Idle connections are dropped before the server's keep-alive (5 s) would close
        // them, so a request never races the server's close on a pooled connection.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            http,
            base: format!("http://{address}"),
            admin_token: admin_token.to_owned(),
            bearer: Arc::default(),
        })
    }

    /// Logs in like a client: registers a staff member, grants them `catalog`,
    /// `fulfilment` and `support` with the admin token, and takes a password grant; every
    /// later request carries the access token (`ACCESS_TOKEN_TTL` outlasts the run).
    /// Answers the token, for wrk's scripts.
    pub(crate) async fn log_in_staff(&self) -> Result<String> {
        let (email, password) = ("staff@bench.example", "bench staff password");
        let body = json!({"email": email, "name": "Bench staff", "password": password});
        let user = id(&self.expect("/users", &body, 201).await?, "id")?;
        let path = format!("/users/{user}/roles");
        let roles = json!({"roles": ["catalog", "fulfilment", "support"]});
        let request = self.admin(self.http.put(format!("{}{path}", self.base)).json(&roles));
        let (status, granted) = answer(request, "PUT", &path).await?;
        ensure!(status == 200, "PUT {path} answered {status}: {granted}");
        let login = json!({"grant_type": "password", "email": email, "password": password});
        let token = id(
            &self.expect("/auth/token", &login, 200).await?,
            "access_token",
        )?;
        self.bearer.set(token.clone()).ok();
        Ok(token)
    }

    /// A request to `path`, without credentials (the caller adds them).
    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.bearer.get() {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `POST path` with a JSON body; the status and the JSON answer (`null` if none).
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        let request = self.http.post(format!("{}{path}", self.base)).json(body);
        answer(self.authorized(request), "POST", path).await
    }

    /// `GET path`; the status and the JSON answer (`null` if none).
    pub(crate) async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let request = self.http.get(format!("{}{path}", self.base));
        answer(self.authorized(request), "GET", path).await
    }

    /// `POST path` that must answer `expected`; its JSON answer.
    async fn expect(&self, path: &str, body: &Value, expected: u16) -> Result<Value> {
        let (status, answer) = self.post(path, body).await?;
        ensure!(
            status == expected,
            "POST {path} answered {status}, not {expected}: {answer}"
        );
        Ok(answer)
    }

    fn admin(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.bearer_auth(&self.admin_token)
    }
}

async fn answer(
    request: reqwest::RequestBuilder,
    method: &str,
    path: &str,
) -> Result<(u16, Value)> {
    let response = request
        .send()
        .await
        .with_context(|| format!("{method} {path}"))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// xorshift64: cheap, and reproducible from its seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        // Never zero (xorshift stays at zero); spread small seeds.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn pick<'a>(&mut self, items: &'a [String]) -> &'a str {
        &items[self.below(items.len())]
    }
}

/// What was seeded: ids, for the load scripts.
#[derive(Default)]
pub(crate) struct Catalog {
    pub(crate) users: Vec<String>,
    pub(crate) products: Vec<String>,
    pub(crate) orders: Vec<String>,
}

impl Catalog {
    /// The body of a new order: a random user, one to three distinct random products, one
    /// to three of each (products are seeded with ample stock).
    pub(crate) fn new_order(&self, rng: &mut Rng) -> Value {
        let lines = 1 + rng.below(3).min(self.products.len() - 1);
        let mut items: Vec<Value> = Vec::with_capacity(lines);
        while items.len() < lines {
            let product = rng.pick(&self.products);
            if items.iter().all(|item| item["product_id"] != product) {
                items.push(json!({"product_id": product, "quantity": 1 + rng.below(3)}));
            }
        }
        json!({"user_id": rng.pick(&self.users), "items": items})
    }
}

/// How long one seeding step took, and how many requests it made.
pub(crate) struct Seeded {
    pub(crate) what: &'static str,
    pub(crate) count: usize,
    pub(crate) requests: u64,
    pub(crate) elapsed: Duration,
}

impl Seeded {
    pub(crate) fn per_second(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `work(i)` for every `i` in `0..count`, at most `concurrency` at a time; the
/// results in order of `i`. The first error stops everything.
async fn concurrently<T, F, Fut>(count: usize, concurrency: usize, work: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T>> + Send,
{
    let (work, next) = (Arc::new(work), Arc::new(AtomicUsize::new(0)));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (work, next) = (work.clone(), next.clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(done);
                }
                done.push((i, work(i).await?));
            }
        });
    }
    let mut results = Vec::with_capacity(count);
    while let Some(finished) = workers.join_next().await {
        results.extend(finished.context("a seeding task panicked")??);
    }
    results.sort_unstable_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, result)| result).collect())
}

/// The email of seeded user `i`; every one has [`USER_PASSWORD`].
pub(crate) fn user_email(i: usize) -> String {
    format!("user{i}@bench.example")
}
pub(crate) const USER_PASSWORD: &str = "bench password";

/// Seeds `users` users, `products` products with ample stock, then `orders` orders over
/// them, a fixed share of which is then confirmed, shipped, delivered or cancelled (see
/// [`lifecycle`]). Everything goes through the API, so the event log is the real one.
pub(crate) async fn seed(
    api: &Api,
    (users, products, orders): (usize, usize, usize),
    concurrency: usize,
) -> Result<(Catalog, Vec<Seeded>)> {
    let mut catalog = Catalog::default();
    let mut report = Vec::new();

    let started = Instant::now();
    catalog.users = concurrently(users, concurrency, {
        let api = api.clone();
        move |i| {
            let api = api.clone();
            async move {
                let body = json!({"email": user_email(i), "name": format!("Bench User {i}"), "password": USER_PASSWORD});
                id(&api.expect("/users", &body, 201).await?, "id")
            }
        }
    })
    .await?;
    report.push(Seeded {
        what: "users",
        count: users,
        requests: users as u64,
        elapsed: started.elapsed(),
    });

    let started = Instant::now();
    catalog.products = concurrently(products, concurrency, {
        let api = api.clone();
        move |i| {
            let api = api.clone();
            async move {
                let body = json!({
                    "name": format!("Product {i}"),
                    "description": "seeded by cargo xtask bench",
                    "price": format!("{}.{:02}", 1 + i % 200, i % 100),
                    "stock": 1_000_000_000,
                });
                id(&api.expect("/products", &body, 201).await?, "id")
            }
        }
    })
    .await?;
    report.push(Seeded {
        what: "products",
        count: products,
        requests: products as u64,
        elapsed: started.elapsed(),
    });

    let started = Instant::now();
    let requests = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(std::mem::take(&mut catalog));
    let placed = concurrently(orders, concurrency, {
        let (api, shared, requests) = (api.clone(), shared.clone(), requests.clone());
        move |i| {
            let (api, shared, requests) = (api.clone(), shared.clone(), requests.clone());
            async move {
                let body = shared.new_order(&mut Rng::new(i as u64));
                let order = id(
                    &api.expect("/commands/orders", &body, 202).await?,
                    "order_id",
                )?;
                let steps = lifecycle(i);
                for command in steps {
                    let path = format!("/commands/orders/{order}/{command}");
                    api.expect(&path, &command_body(command), 202).await?;
                }
                requests.fetch_add(1 + steps.len() as u64, Ordering::Relaxed);
                Ok(order)
            }
        }
    })
    .await?;
    catalog = Arc::try_unwrap(shared)
        .ok()
        .context("a seeding task outlived seeding")?;
    catalog.orders = placed;
    report.push(Seeded {
        what: "orders",
        count: orders,
        requests: requests.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    });
    Ok((catalog, report))
}

/// What happens to seeded order `i` after it is placed, by `i % 20`: 40 % stay pending,
/// 10 % are cancelled pending, 10 % confirmed, 5 % confirmed then cancelled (refunded),
/// 15 % shipped, 20 % delivered.
fn lifecycle(i: usize) -> &'static [&'static str] {
    match i % 20 {
        0..8 => &[],
        8..10 => &["cancel"],
        10..12 => &["confirm"],
        12 => &["confirm", "cancel"],
        13..16 => &["confirm", "ship"],
        _ => &["confirm", "ship", "deliver"],
    }
}

/// The body of an order command.
fn command_body(command: &str) -> Value {
    match command {
        "confirm" => json!({"payment_token": "tok_visa"}),
        "cancel" => json!({"reason": "changed my mind"}),
        _ => json!({}),
    }
}

fn id(body: &Value, field: &str) -> Result<String> {
    body[field]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no {field} in {body}"))
}

/// Projection lag while orders are placed at a fixed rate.
pub(crate) struct Lag {
    /// Time from a placement's `202` to the read model showing the order, per probe.
    pub(crate) samples: Vec<Duration>,
    /// Probes the read model had not shown when the phase's time was up.
    pub(crate) unseen: usize,
    /// The projection's backlog (events) when the placements stopped.
    pub(crate) backlog: i64,
    /// The background rate asked for, and what the server took.
    pub(crate) offered: f64,
    pub(crate) achieved: f64,
    /// Background placements that failed, or were not sent because too many were still
    /// waiting for their answer (the server fell behind the rate).
    pub(crate) errors: u64,
    pub(crate) skipped: u64,
    /// The first failure, if any.
    pub(crate) first_error: Option<String>,
}

/// Places orders at `rate` per second in the background ([`drive_at`]: wrk cannot limit
/// its rate) and meanwhile runs up to `probes` probes one after the other, for at most
/// `limit`: place an order, and from its `202` poll
/// `GET /queries/orders/{id}` until it is there. A projection that falls behind the rate
/// shows as probes the limit cut short (`unseen`) and a backlog, not as an error.
pub(crate) async fn projection_lag(
    api: &Api,
    catalog: &Arc<Catalog>,
    rate: f64,
    probes: usize,
    limit: Duration,
) -> Result<Lag> {
    ensure!(rate > 0.0, "no rate to drive at");
    let deadline = Instant::now() + limit;
    let control = Arc::new(Control::default());
    let background = tokio::spawn(drive_at(rate, control.clone(), {
        let (api, catalog, mut rng) = (api.clone(), catalog.clone(), Rng::new(0xd21e));
        move || {
            let (api, body) = (api.clone(), catalog.new_order(&mut rng));
            async move {
                match api.post("/commands/orders", &body).await? {
                    (202, _) => Ok(()),
                    (status, answer) => bail!("{status}: {answer}"),
                }
            }
        }
    }));
    let mut rng = Rng::new(0x1a6);
    let (mut samples, mut unseen) = (Vec::with_capacity(probes), 0);
    let probed = async {
        while samples.len() + unseen < probes && Instant::now() < deadline {
            match probe(api, &catalog.new_order(&mut rng), deadline).await? {
                Some(lag) => samples.push(lag),
                None => unseen += 1,
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::Ok(())
    }
    .await;
    control.stop.store(true, Ordering::Relaxed);
    let driven = background.await.context("the rate driver panicked")?;
    probed?;
    let backlog = orders_read_status(api).await?["lag_events"]
        .as_i64()
        .unwrap_or_default();
    ensure!(
        !samples.is_empty(),
        "no probe saw its order in the read model within {limit:?}"
    );
    Ok(Lag {
        samples,
        unseen,
        backlog,
        offered: rate,
        achieved: (driven.sent - driven.errors) as f64 / driven.elapsed.as_secs_f64(),
        errors: driven.errors,
        skipped: driven.skipped,
        first_error: driven.first_error,
    })
}

/// One probe: the time from the `202` of a placement to the order in the read model;
/// `None` if it was not there by `deadline`.
async fn probe(api: &Api, order: &Value, deadline: Instant) -> Result<Option<Duration>> {
    let (status, answer) = api.post("/commands/orders", order).await?;
    ensure!(
        status == 202,
        "a probe's placement answered {status}: {answer}"
    );
    let accepted = Instant::now();
    let path = format!("/queries/orders/{}", id(&answer, "order_id")?);
    loop {
        match api.get(&path).await?.0 {
            200 => return Ok(Some(accepted.elapsed())),
            404 if Instant::now() < deadline => {}
            404 => return Ok(None),
            status => bail!("probing {path}: {status} after {:?}", accepted.elapsed()),
        }
    }
}

/// What a rate-limited driver did.
pub(crate) struct Driven {
    pub(crate) sent: u64,
    pub(crate) errors: u64,
    /// Not sent: [`MAX_IN_FLIGHT`] were still waiting for their answer.
    pub(crate) skipped: u64,
    pub(crate) elapsed: Duration,
    /// The first failure, if any.
    pub(crate) first_error: Option<String>,
}

/// More requests than this waiting for an answer: the server is not keeping up.
pub(crate) const MAX_IN_FLIGHT: usize = 256;

/// A running driver's switch and what it skipped so far, shared with whoever watches it.
#[derive(Default)]
pub(crate) struct Control {
    /// Set to stop the driver.
    pub(crate) stop: AtomicBool,
    /// Requests not sent so far: [`MAX_IN_FLIGHT`] were still waiting.
    pub(crate) skipped: AtomicU64,
}

/// An open-loop driver: starts `work()` `rate` times a second until `control.stop`, whether or not
/// the earlier ones have answered (a slow server shows as latency, not as a lower rate),
/// with at most [`MAX_IN_FLIGHT`] in flight; beyond that a request is skipped. Failures are
/// counted, the first kept. Returns once every request in flight has finished, so the
/// next phase starts from a quiet server.
pub(crate) async fn drive_at<F, Fut>(rate: f64, control: Arc<Control>, mut work: F) -> Driven
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let failures = Arc::new(std::sync::Mutex::new((0u64, None::<String>)));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0u64;
    let started = Instant::now();
    while !control.stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            control.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (request, failures) = (work(), failures.clone());
        sent += 1;
        tokio::spawn(async move {
            if let Err(error) = request.await {
                let mut failures = failures.lock().unwrap_or_else(|e| e.into_inner());
                failures.0 += 1;
                failures.1.get_or_insert(format!("{error:#}"));
            }
            drop(permit);
        });
    }
    let elapsed = started.elapsed();
    let _ = in_flight.acquire_many(MAX_IN_FLIGHT as u32).await;
    let (errors, first_error) = failures.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Driven {
        sent,
        errors,
        skipped: control.skipped.load(Ordering::Relaxed),
        elapsed,
        first_error,
    }
}

/// A read-model rebuild over the whole event log.
pub(crate) struct Rebuild {
    /// Events in the projection's source logs when it started.
    pub(crate) events: i64,
    pub(crate) elapsed: Duration,
}

impl Rebuild {
    pub(crate) fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// `POST /admin/projections/orders_read/rebuild` on an idle projection; the number of events
/// it replays (the projection's `head`) and when it was asked for.
pub(crate) async fn start_rebuild(api: &Api) -> Result<(i64, Instant)> {
    let before = orders_read_status(api).await?;
    ensure!(
        before["status"] == "running" && before["lag_events"] == 0,
        "the projection is not idle before the rebuild: {before}"
    );
    let events = before["head"].as_i64().context("no head in the status")?;
    let path = "/admin/projections/orders_read/rebuild";
    let started = Instant::now();
    let (status, answer) = answer(
        api.admin(api.http.post(format!("{}{path}", api.base))),
        "POST",
        path,
    )
    .await?;
    ensure!(status == 202, "POST {path} answered {status}: {answer}");
    Ok((events, started))
}

/// Whether `/admin/projections` shows the projection `running` again, without a
/// `rebuild`; an error if it is neither rebuilding nor running.
pub(crate) async fn rebuild_done(api: &Api) -> Result<bool> {
    let now = orders_read_status(api).await?;
    if now["status"] == "running" && now.get("rebuild").is_none() {
        return Ok(true);
    }
    ensure!(
        now["status"] == "rebuilding",
        "the rebuild went wrong: {now}"
    );
    Ok(false)
}

/// The `orders_read` entry of `GET /admin/projections`.
async fn orders_read_status(api: &Api) -> Result<Value> {
    let path = "/admin/projections";
    // A loaded server may answer 503 (its pool's bounded wait ran out): ask again, for a while.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, answer) = loop {
        let (status, answer) = answer(
            api.admin(api.http.get(format!("{}{path}", api.base))),
            "GET",
            path,
        )
        .await?;
        if status != 503 || Instant::now() > deadline {
            break (status, answer);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ensure!(status == 200, "GET {path} answered {status}: {answer}");
    answer["projections"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == "orders_read"))
        .cloned()
        .with_context(|| format!("no orders_read in {answer}"))
}

/// Waits until the projection has applied every event (after a load phase).
pub(crate) async fn caught_up(api: &Api, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let status = orders_read_status(api).await?;
        if status["lag_events"] == 0 && status["status"] == "running" {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the projection did not catch up within {timeout:?}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `q`-quantile (0..=1) of `samples`, nearest rank.
pub(crate) fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}
