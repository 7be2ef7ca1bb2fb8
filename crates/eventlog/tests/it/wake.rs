//! Wake-ups come after the commit, never inside the writer's transaction: the process's
//! listeners see them once it commits (and not if it rolls back), and other processes get a
//! `NOTIFY` that the writer's own transaction did not send.

use std::time::{Duration, Instant};

use diesel::sql_types::Integer;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::StreamExt;
use kernel::db;

use super::{fixture, write_conn};

/// A channel of this test alone: channels are process-wide, and the tests share a process.
fn channel_of_its_own(name: &str) -> &'static str {
    Box::leak(format!("test_{name}_{}", uuid::Uuid::now_v7().simple()).into_boxed_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_wake_when_the_outermost_transaction_commits_and_not_on_rollback() {
    let f = fixture().await;
    let channel = channel_of_its_own("commits");
    let listener = eventlog::Listener::start(&f.db.url, channel);
    let mut moved = listener.subscribe();
    moved.borrow_and_update();
    let mut conn = write_conn(&f).await;

    let rolled_back: Result<(), anyhow::Error> = db::transaction(&mut conn, async |_| {
        eventlog::signal(channel);
        anyhow::bail!("changed its mind")
    })
    .await;
    assert!(rolled_back.is_err());
    assert!(
        !moved.has_changed().unwrap(),
        "a rollback woke the listeners"
    );

    let inner = moved.clone();
    db::transaction(&mut conn, async |conn| {
        db::transaction(conn, async |_| {
            eventlog::signal(channel);
            anyhow::Ok(())
        })
        .await?;
        assert!(
            !inner.has_changed().unwrap(),
            "a savepoint's release woke the listeners before the commit"
        );
        f.append(conn, 1, false).await;
        assert!(
            !inner.has_changed().unwrap(),
            "the append woke them before the commit"
        );
        anyhow::Ok(())
    })
    .await
    .unwrap();
    assert!(
        moved.has_changed().unwrap(),
        "the commit did not wake the listeners"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_s_transaction_notifies_no_one_and_the_notifier_does_after_it() {
    let f = fixture().await;
    // This process's notifier of the event logs' channel (as the dispatcher runs it).
    let _listener = eventlog::Listener::start(&f.db.url, eventlog::CHANNEL);
    // Another process's listener, as a raw `LISTEN`.
    let mut other = AsyncPgConnection::establish(&f.db.url).await.unwrap();
    other
        .batch_execute(&format!("LISTEN {}", eventlog::CHANNEL))
        .await
        .unwrap();
    let mut conn = write_conn(&f).await;
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = Integer)]
        pid: i32,
    }
    let writer = diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<Pid>(&mut conn)
        .await
        .unwrap()
        .pid;
    db::transaction(&mut conn, async |conn| {
        f.append(conn, 1, false).await;
        anyhow::Ok(())
    })
    .await
    .unwrap();

    let mut senders = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut notifications = std::pin::pin!(other.notifications_stream());
    while senders.is_empty() && Instant::now() < deadline {
        if let Ok(Some(notification)) =
            tokio::time::timeout(Duration::from_millis(200), notifications.next()).await
        {
            senders.push(notification.unwrap().process_id);
        }
    }
    // Whatever else arrives within a moment (a NOTIFY of the writer's would come first).
    while let Ok(Some(notification)) =
        tokio::time::timeout(Duration::from_millis(300), notifications.next()).await
    {
        senders.push(notification.unwrap().process_id);
    }
    assert!(!senders.is_empty(), "no process was notified of the commit");
    assert!(
        !senders.contains(&writer),
        "the writer's transaction notified (pid {writer}): its commit held the cluster's notify lock"
    );
}
