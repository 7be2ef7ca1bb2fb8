//! The publisher against a real `nats-server` of the test's own: one leader per log
//! however many processes run it, a standby that takes over when the leader goes, and no
//! duplicate in the stream when a publisher resends after JetStream's duplicate window.

use std::time::{Duration, Instant};

use eventlog::{PublishSettings, PublishedLog, Publishers, StreamSettings};
use kernel::db;
use natsserver::NatsServer;
use serde_json::Value;

use super::{Fixture, LEDGER, fixture, write_conn};

fn private_nats() -> (NatsServer, std::path::PathBuf) {
    let base = std::env::temp_dir().join(format!("eventlog-nats-{}", uuid::Uuid::now_v7()));
    (NatsServer::start(base.clone()).unwrap(), base)
}

/// One process's publishers of the ledger's log (pools of their own).
async fn publishers(f: &Fixture, nats: &NatsServer, duplicate_window: Duration) -> Publishers {
    let log = PublishedLog {
        schema: "ledger",
        pool: db::pool(&f.db.url, &LEDGER, Default::default()).unwrap(),
        leader: db::pool(
            &f.db.url,
            &LEDGER,
            db::PoolSettings {
                max_size: 1,
                ..Default::default()
            },
        )
        .unwrap(),
    };
    let settings = PublishSettings {
        stream: StreamSettings {
            duplicate_window,
            ..StreamSettings::default()
        },
        poll_interval: Duration::from_millis(20),
        standby_interval: Duration::from_millis(50),
        ..PublishSettings::new(nats.url())
    };
    let wake = eventlog::Listener::start(&f.db.url, eventlog::CHANNEL);
    let publishers = Publishers::start(vec![log], settings, wake.subscribe())
        .await
        .unwrap();
    // The listener only speeds things up; polling finds every event without it.
    drop(wake);
    publishers
}

async fn append(f: &Fixture, from: i64, count: i64) {
    let mut conn = write_conn(f).await;
    for n in from..from + count {
        f.append(&mut conn, n, false).await;
    }
}

async fn published(f: &Fixture) -> i64 {
    f.db.scalar("SELECT applied AS n FROM ledger.checkpoints WHERE subscriber = 'nats_publisher'")
        .await
}

async fn wait_published(f: &Fixture, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while published(f).await < count {
        assert!(
            Instant::now() < deadline,
            "{} of {count} published",
            published(f).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `n` of every message in the stream, in stream order.
async fn stream(nats: &NatsServer) -> Vec<i64> {
    natsserver::stream_messages(&nats.url(), eventlog::STREAM)
        .await
        .unwrap()
        .iter()
        .map(|message| {
            assert_eq!(message.subject, "emporium.ledger.test.happened");
            let body: Value = serde_json::from_slice(&message.payload).unwrap();
            body["payload"]["n"].as_i64().unwrap()
        })
        .collect()
}

/// Raw: `pg_locks` spells a bigint advisory key as two oids. Whether some session of this
/// database holds the ledger publisher's lead (the key of `publish.rs`'s `LEAD`).
const LEADING: &str = "SELECT count(*) AS n FROM pg_locks \
     WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND (classid::bigint << 32 | objid::bigint) \
         = hashtextextended('emporium.publisher.' || 'ledger', 0)";

/// Until one process holds the ledger log's lead.
async fn wait_led(f: &Fixture) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while f.db.scalar(LEADING).await == 0 {
        assert!(
            Instant::now() < deadline,
            "nobody took the publisher's lead"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Messages each NATS client connection sent, oldest connection first.
async fn sent_by_connection(nats: &NatsServer) -> Vec<i64> {
    let connz: Value = reqwest::get(format!("{}/connz?sort=cid", nats.monitoring_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "emporium")
        .map(|c| c["in_msgs"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_publishes_a_log_and_a_standby_takes_over() {
    let (nats, base) = private_nats();
    let f = fixture().await;
    let first = publishers(&f, &nats, Duration::from_secs(120)).await;
    // The first takes the lead before the second starts.
    wait_led(&f).await;
    let second = publishers(&f, &nats, Duration::from_secs(120)).await;
    append(&f, 0, 150).await;
    wait_published(&f, 150).await;
    let sent = sent_by_connection(&nats).await;
    assert_eq!(sent.len(), 2, "two processes connected: {sent:?}");
    assert!(sent[0] >= 150, "the first process leads: {sent:?}");
    assert_eq!(sent[1], 0, "the standby sent nothing: {sent:?}");

    drop(first);
    append(&f, 150, 50).await;
    wait_published(&f, 200).await;
    assert!(
        sent_by_connection(&nats).await[0] >= 50,
        "the standby took over"
    );
    assert_eq!(
        stream(&nats).await,
        (0..200).collect::<Vec<_>>(),
        "each once, in log order"
    );
    drop((second, nats));
    let _ = std::fs::remove_dir_all(base);
}

/// A crash between JetStream's acknowledgement and the checkpoint's move, and nobody
/// publishing for longer than the duplicate window: the next leader sends nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_after_the_duplicate_window_adds_no_duplicate() {
    let (nats, base) = private_nats();
    let f = fixture().await;
    let window = Duration::from_secs(1);
    let first = publishers(&f, &nats, window).await;
    append(&f, 0, 30).await;
    wait_published(&f, 30).await;
    drop(first);
    // As if it crashed before moving the checkpoint past the last batches.
    let mut conn = f.db.connect().await;
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut conn,
        "UPDATE ledger.checkpoints SET xid = '0', seq = 0, applied = 0 \
         WHERE subscriber = 'nats_publisher'",
    )
    .await
    .unwrap();
    tokio::time::sleep(window * 2).await;
    append(&f, 30, 5).await;
    let second = publishers(&f, &nats, window).await;
    // From the reset checkpoint: the 30 the stream holds (skipped) and the 5 new.
    wait_published(&f, 35).await;
    assert_eq!(
        stream(&nats).await,
        (0..35).collect::<Vec<_>>(),
        "each once, in log order"
    );
    drop((second, nats));
    let _ = std::fs::remove_dir_all(base);
}
