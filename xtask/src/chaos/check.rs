//! After a round: settle, then check the contract's invariants (crate `invariants`) in the
//! database, the gateway's ledger against the payments included, the same facts through
//! the API of every instance, and in rounds with NATS invariant 4 against the stream
//! (`stream.rs`).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use super::{Shop, TOKEN, stream};
use crate::db::{self, DbUrl};

/// How long a round may take to settle at most. Longer than the reconciler's longest pause
/// between two checks of one payment (`payments::ReconcilerSettings::longest_pause`, 60 s;
/// xtask links no module), so a payment whose checks failed while Postgres was down is
/// asked again within it. With the rounds' gateway deadline the reconciler first asks
/// after 0.6 s and backs off from 0.3 s, so a round normally settles in a few seconds.
pub(super) const SETTLE_LIMIT: Duration = Duration::from_secs(90);

/// What settling found: the violations, how long it took, and with NATS the messages
/// the stream held and how long reading and judging them took (part of `took`).
pub(super) struct Settled {
    pub(super) found: Vec<String>,
    pub(super) took: Duration,
    pub(super) streamed: Option<(usize, Duration)>,
}

/// Waits until background work has settled (projections caught up, no payment pending,
/// no refund unconfirmed, and with `nats_url` the publisher caught up with every log) and
/// the invariants hold, or [`SETTLE_LIMIT`] is up; then checks them once more, in the
/// database and through the API, each read asked of the next of `bases` in turn, and
/// with `nats_url` against the stream.
pub(super) async fn settle_and_check(
    url: &DbUrl,
    bases: &[String],
    shop: &Shop,
    nats_url: Option<&str>,
) -> Result<Settled> {
    let base = bases.first().context("no instance to check through")?;
    let client = db::connect(url).await.context("connecting for checks")?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let mut found = violations(&client).await?;
        let lags = lags(&http, base).await.unwrap_or(Lags {
            projections: i64::MAX,
            publisher: None,
        });
        let unsettled = scalar(&client, &invariants::unsettled_payments()).await?;
        let published = nats_url.is_none() || lags.publisher.as_ref().is_some_and(|p| p.0 == 0);
        let settled = lags.projections == 0 && unsettled == 0 && published;
        if (found.is_empty() && settled) || started.elapsed() > SETTLE_LIMIT {
            if lags.projections != 0 {
                found.push(format!(
                    "projections still lag by {} events after {SETTLE_LIMIT:?}",
                    lags.projections
                ));
            }
            if unsettled != 0 {
                found.push(format!(
                    "{unsettled} payments still pending or with a refund unconfirmed after {SETTLE_LIMIT:?}"
                ));
            }
            if !published {
                found.push(match lags.publisher {
                    Some((lag, evidence)) => format!(
                        "{PUBLISHER} still lags by {lag} events after {SETTLE_LIMIT:?}: {evidence}"
                    ),
                    None => format!("NATS_URL is set but /admin/projections lists no {PUBLISHER}"),
                });
            }
            let mut streamed = None;
            if found.is_empty() {
                found.extend(api_agrees(&client, &http, bases, shop).await?);
                if let Some(nats_url) = nats_url {
                    let reading = Instant::now();
                    let (violations, messages) = stream::check(&client, nats_url).await?;
                    found.extend(violations);
                    streamed = Some((messages, reading.elapsed()));
                }
            }
            return Ok(Settled {
                found,
                took: started.elapsed(),
                streamed,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs a query returning one bigint column `n`.
pub(super) async fn scalar(client: &tokio_postgres::Client, sql: &str) -> Result<i64> {
    Ok(client
        .query_one(sql, &[])
        .await
        .with_context(|| format!("running {sql}"))?
        .get("n"))
}

/// Every invariant of the contract, each violation with its count.
async fn violations(client: &tokio_postgres::Client) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for (name, sql) in invariants::checks() {
        let n: i64 = client
            .query_one(sql.as_str(), &[])
            .await
            .with_context(|| format!("checking {name}"))?
            .get("n");
        if n != 0 {
            found.push(format!("{name}: {n} violations"));
        }
    }
    Ok(found)
}

/// The subscriber that publishes to NATS (`eventlog::PUBLISHER`; xtask links no module).
const PUBLISHER: &str = "nats_publisher";

/// Where the subscribers stand, from `/admin/projections`.
struct Lags {
    /// Events the projections and the saga have yet to apply.
    projections: i64,
    /// The publisher's, if it runs: events the stream has yet to acknowledge, and where
    /// it stands in each log (the evidence when it never catches up).
    publisher: Option<(i64, String)>,
}

async fn lags(http: &reqwest::Client, base: &str) -> Result<Lags> {
    let status: Value = http
        .get(format!("{base}/admin/projections"))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let projections = status["projections"].as_array().context("no projections")?;
    let lag = |p: &Value| p["lag_events"].as_i64().unwrap_or(i64::MAX);
    let (publisher, others): (Vec<&Value>, Vec<&Value>) = projections
        .iter()
        .partition(|p| p["name"].as_str() == Some(PUBLISHER));
    let publisher = publisher.first().map(|p| {
        let logs: Vec<String> = p["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                format!(
                    "{} {} behind, {} failed attempts (last error: {})",
                    s["source"], s["lag_events"], s["attempts"], s["last_error"]
                )
            })
            .collect();
        (
            lag(p),
            format!("status {}; {}", p["status"], logs.join("; ")),
        )
    });
    Ok(Lags {
        projections: others
            .into_iter()
            .fold(0, |sum, p| lag(p).saturating_add(sum)),
        publisher,
    })
}

/// The same facts through the API: every product's stock, and every order the drivers
/// placed, as the read model answers them, equal the database's write model, whichever
/// instance answers (each read asks the next of `bases`).
async fn api_agrees(
    client: &tokio_postgres::Client,
    http: &reqwest::Client,
    bases: &[String],
    shop: &Shop,
) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut next = bases.iter().cycle();
    for product in &shop.products {
        let base = next.next().context("no instance")?;
        let answer: Value = http
            .get(format!("{base}/products/{product}"))
            .send()
            .await?
            .json()
            .await?;
        let row = client
            .query_one(
                "SELECT stock, reserved FROM products.products WHERE id = $1::text::uuid",
                &[product],
            )
            .await?;
        let (stock, reserved): (i64, i64) = (row.get(0), row.get(1));
        if answer["stock"].as_i64() != Some(stock) || answer["reserved"].as_i64() != Some(reserved)
        {
            found.push(format!("product {product}: API says {answer}, database says stock {stock} reserved {reserved}"));
        }
    }
    let orders = shop.orders.lock().await.clone();
    for (order, _) in orders {
        let base = next.next().context("no instance")?;
        let row = client
            .query_opt(
                "SELECT status, version FROM orders.orders WHERE id = $1::text::uuid",
                &[&order],
            )
            .await?
            .context("an accepted order is missing from the write model")?;
        let (status, version): (String, i64) = (row.get(0), row.get(1));
        let view: Value = http
            .get(format!("{base}/queries/orders/{order}"))
            .bearer_auth(&shop.staff)
            .send()
            .await?
            .json()
            .await?;
        if view["status"].as_str() != Some(status.as_str())
            || view["version"].as_i64() != Some(version)
        {
            found.push(format!(
                "order {order}: read model {} v{}, write model {status} v{version}",
                view["status"], view["version"]
            ));
        }
    }
    Ok(found)
}
