//! The load `cargo xtask bench` and `soak` drive in Rust where wrk does not fit (see
//! `bench/`): the API client, seeding, an open-loop (rate-limited) driver, a placement
//! load with projection lag probes on top, and a read-model rebuild.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::seed::Catalog;

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
        let (email, password) = (STAFF_EMAIL, "bench staff password");
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
    pub(crate) async fn expect(&self, path: &str, body: &Value, expected: u16) -> Result<Value> {
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

/// The staff member [`Api::log_in_staff`] registers.
pub(crate) const STAFF_EMAIL: &str = "staff@bench.example";

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

pub(crate) fn id(body: &Value, field: &str) -> Result<String> {
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
