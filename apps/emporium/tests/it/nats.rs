//! Externalization to NATS JetStream against a real `nats-server` of the test's own
//! (`natsserver`): every event of a run reaches the stream exactly once per
//! `Nats-Msg-Id`, in log order per module, with the contract's subject and body; NATS
//! killed and started again mid-run loses nothing and never makes the shop unready.

use std::collections::HashMap;

use diesel::sql_types::{BigInt, Integer, Text};
use diesel_async::RunQueryDsl;
use emporium::{Config, Hooks};
use kernel::testing::TestDatabase;
use natsserver::NatsServer;
use serde_json::{Value, json};

/// The README's consumer in another service, run here as its user would.
#[path = "../../../../crates/eventlog/examples/consume_stream.rs"]
#[allow(dead_code, unreachable_pub)]
mod consume_stream;

use crate::guarantees::Rng;
use crate::{TestApp, database, spawn_with};

use invariants::stream::{Logged, MODULE_LOGS as LOGS, Message, stream_violations};

/// A private NATS server in a fresh folder of the system's temporary directory.
pub(crate) fn private_nats() -> (NatsServer, std::path::PathBuf) {
    let base = std::env::temp_dir().join(format!("emporium-nats-{}", uuid::Uuid::now_v7()));
    (
        NatsServer::start(base.clone()).expect("start nats-server"),
        base,
    )
}

async fn spawn_publishing(db: &TestDatabase, nats_url: &str) -> TestApp {
    let nats_url = nats_url.to_owned();
    spawn_with(
        db.clone(),
        move |url| Config {
            nats_url: Some(nats_url),
            ..Config::for_database(url)
        },
        Hooks::default(),
    )
    .await
}

/// One message of the stream.
pub(crate) struct Published {
    pub subject: String,
    pub msg_id: String,
    pub body: Value,
}

/// Every message of stream `EMPORIUM`, in stream order.
pub(crate) async fn stream_messages(nats_url: &str) -> Vec<Published> {
    natsserver::stream_messages(nats_url, eventlog::STREAM)
        .await
        .expect("reading the stream")
        .into_iter()
        .map(|message| Published {
            subject: message.subject,
            msg_id: message.msg_id,
            body: serde_json::from_slice(&message.payload).expect("a JSON body"),
        })
        .collect()
}

#[derive(diesel::QueryableByName)]
struct LogRow {
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Text)]
    aggregate_id: String,
    #[diesel(sql_type = BigInt)]
    aggregate_version: i64,
    #[diesel(sql_type = Integer)]
    schema_version: i32,
    #[diesel(sql_type = Text)]
    payload: String,
}

/// Each log's events in log order.
async fn log_events(db: &TestDatabase, log: &str) -> Vec<LogRow> {
    let mut conn = db.connect().await;
    diesel::sql_query(format!(
        "SELECT event_id::text AS event_id, event_type, aggregate_id::text AS aggregate_id, \
         aggregate_version, schema_version, payload::text AS payload \
         FROM {log}.events ORDER BY xid, seq"
    ))
    .load(&mut conn)
    .await
    .expect("reading a log")
}

/// Invariant 4 against the stream (`invariants::stream`: every event once, in log order,
/// under its subject), and every body the envelope of its event.
pub(crate) async fn assert_stream_matches_logs(db: &TestDatabase, nats_url: &str) {
    let messages = stream_messages(nats_url).await;
    let mut logs = Vec::new();
    for log in LOGS {
        let events = log_events(db, log).await;
        let by_id: HashMap<&str, &LogRow> =
            events.iter().map(|e| (e.event_id.as_str(), e)).collect();
        for message in messages
            .iter()
            .filter(|m| m.subject.starts_with(&format!("emporium.{log}.")))
        {
            let event = by_id[message.msg_id.as_str()];
            let body = &message.body;
            let mut keys: Vec<&str> = body
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                [
                    "actor",
                    "aggregate_id",
                    "aggregate_version",
                    "correlation_id",
                    "event_id",
                    "event_type",
                    "occurred_at",
                    "payload",
                    "schema_version"
                ],
                "the envelope's fields"
            );
            assert_eq!(
                body["event_id"],
                json!(event.event_id),
                "Nats-Msg-Id is the event id"
            );
            assert_eq!(body["event_type"], json!(event.event_type));
            assert_eq!(body["aggregate_id"], json!(event.aggregate_id));
            assert_eq!(body["aggregate_version"], json!(event.aggregate_version));
            assert_eq!(body["schema_version"], json!(event.schema_version));
            let payload: Value = serde_json::from_str(&event.payload).unwrap();
            assert_eq!(body["payload"], payload);
        }
        let logged = events
            .iter()
            .map(|e| Logged {
                event_id: e.event_id.clone(),
                event_type: e.event_type.clone(),
            })
            .collect();
        logs.push((log, logged));
    }
    let stream: Vec<Message> = messages
        .iter()
        .map(|m| Message {
            subject: m.subject.clone(),
            msg_id: m.msg_id.clone(),
        })
        .collect();
    let violations = stream_violations(&logs, &stream);
    assert!(
        violations.is_empty(),
        "invariant 4 against the stream: {violations:#?}"
    );
}

/// The publisher's row of `/admin/projections`.
async fn publisher_status(app: &TestApp) -> Value {
    let answer = app.http.get("/admin/projections").await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    answer.body["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p.get("name") == Some(&json!(eventlog::PUBLISHER)))
        .cloned()
        .unwrap_or_else(|| panic!("no publisher in {:#}", answer.body))
}

pub(crate) async fn wait_published(app: &TestApp) {
    crate::wait_for("the publisher caught up", async || {
        let status = publisher_status(app).await;
        status["lag_events"] == json!(0) && status["status"] == json!("running")
    })
    .await;
}

/// `commands` random commands of every module through `app`: users registered and
/// renamed, products created and restocked, orders placed, confirmed, shipped, cancelled.
pub(crate) async fn random_commands(app: &TestApp, seed: u64, commands: usize) {
    let mut rng = Rng(seed);
    let mut users = Vec::new();
    for i in 0..3 {
        users.push(app.user(&format!("nats{seed}-{i}@example.com")).await);
    }
    let mut products = Vec::new();
    for i in 0..3 {
        products.push(app.product(&format!("N{i}"), "2.50", 500).await);
    }
    let mut orders: Vec<String> = Vec::new();
    for _ in 0..commands {
        let pick = rng.next() % 100;
        if pick < 40 || orders.is_empty() {
            let user = &users[(rng.next() % 3) as usize];
            let product = &products[(rng.next() % 3) as usize];
            let answer = app.order(user, &[(product, 1)]).await;
            if answer.status == 202 {
                orders.push(answer.body["order_id"].as_str().unwrap().to_owned());
            }
            continue;
        }
        let order = orders[(rng.next() % orders.len() as u64) as usize].clone();
        let answer = match pick {
            40..=64 => {
                app.command(&order, "confirm", json!({"payment_token": "tok_visa"}))
                    .await
            }
            65..=74 => app.command(&order, "ship", json!({})).await,
            75..=86 => {
                app.command(&order, "cancel", json!({"reason": "random"}))
                    .await
            }
            87..=93 => {
                let product = &products[(rng.next() % 3) as usize];
                app.http
                    .post(
                        &format!("/products/{product}/restock"),
                        json!({"quantity": 2}),
                    )
                    .await
            }
            _ => {
                let user = &users[(rng.next() % 3) as usize];
                app.as_user(user)
                    .patch(
                        &format!("/users/{user}"),
                        json!({"name": format!("n{}", rng.next() % 50)}),
                    )
                    .await
            }
        };
        assert!(answer.status < 500, "a command failed: {:#}", answer.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_the_stream_once_in_log_order() {
    let (nats, base) = private_nats();
    let db = database().await;
    let app = spawn_publishing(&db, &nats.url()).await;
    random_commands(&app, 11, 120).await;
    wait_published(&app).await;
    assert_stream_matches_logs(&db, &nats.url()).await;
    for log in LOGS {
        let events = db
            .scalar(&format!("SELECT count(*) AS n FROM {log}.events"))
            .await;
        assert!(events > 0, "the run wrote to the {log} log");
    }
    // The example consumer reads the orders module's events, each once, then nothing new.
    let idle = std::time::Duration::from_millis(500);
    let orders = consume_stream::consume(&nats.url(), "shipping", "emporium.orders.>", idle)
        .await
        .unwrap();
    let logged = db.scalar("SELECT count(*) AS n FROM orders.events").await;
    assert_eq!(
        orders.len() as i64,
        logged,
        "the consumer got every order event"
    );
    assert!(orders.iter().all(|e| {
        e.subject.starts_with("emporium.orders.order.")
            && e.envelope["event_type"]
                .as_str()
                .is_some_and(|t| t.starts_with("order."))
    }));
    let again = consume_stream::consume(&nats.url(), "shipping", "emporium.orders.>", idle)
        .await
        .unwrap();
    assert!(
        again.is_empty(),
        "a durable consumer resumes after what it acknowledged"
    );
    // Published events are counted by log.
    let metrics = app.http.get("/metrics").await;
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    assert!(
        text.contains(&format!("{}{{log=\"orders\"}}", eventlog::PUBLISHED)),
        "no published counter in /metrics"
    );
    drop(nats);
    let _ = std::fs::remove_dir_all(base);
}

/// NATS killed under a running shop: commands go on, readiness holds, the publisher
/// reports the outage; then the process crashes too (what its NATS client still held
/// is gone), and a new process publishes every event once NATS is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_mid_run_loses_nothing_and_the_shop_serves() {
    let (mut nats, base) = private_nats();
    let db = database().await;
    let app = spawn_publishing(&db, &nats.url()).await;
    random_commands(&app, 21, 40).await;
    wait_published(&app).await;
    nats.kill().unwrap();
    random_commands(&app, 22, 60).await;
    let ready = app.http.anonymous().get("/health/ready").await;
    assert_eq!(
        ready.status, 200,
        "NATS down does not make the shop unready: {:#}",
        ready.body
    );
    crate::wait_for("the publisher reports NATS down", async || {
        let status = publisher_status(&app).await;
        status["lag_events"].as_i64() > Some(0)
            && status["status"] == json!("retrying")
            && status["sources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["last_error"].is_string())
    })
    .await;
    app.stop().await;
    nats.restart().unwrap();
    let app = spawn_publishing(&db, &nats.url()).await;
    random_commands(&app, 23, 30).await;
    wait_published(&app).await;
    assert_stream_matches_logs(&db, &nats.url()).await;
    drop(nats);
    let _ = std::fs::remove_dir_all(base);
}
