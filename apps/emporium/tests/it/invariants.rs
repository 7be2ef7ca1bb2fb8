//! The contract's invariants 1-4 (crate `invariants`), checked directly in the database
//! (the test connects as a superuser; the app's modules cannot read each other's schemas),
//! the gateway's ledger included; and a proof that each ledger check can fail.

use std::time::{Duration, Instant};

use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use kernel::testing::TestDatabase;
use serde_json::json;

/// Every violation found, as readable lines; empty when all hold.
pub(crate) async fn violations(db: &TestDatabase) -> Vec<String> {
    let mut found = Vec::new();
    for (name, sql) in invariants::checks() {
        let n = db.scalar(&sql).await;
        if n != 0 {
            found.push(format!("{name}: {n} violations"));
        }
    }
    found
}

/// Waits (bounded) for background work to settle, then asserts every invariant.
pub(crate) async fn assert_hold(db: &TestDatabase) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = violations(db).await;
        if found.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "invariants violated after settling:\n{}",
            found.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The check whose name starts with `prefix` (there must be exactly one).
fn check(prefix: &str) -> String {
    let mut found = invariants::checks()
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix));
    let (_, sql) = found
        .next()
        .unwrap_or_else(|| panic!("no check {prefix:?}"));
    assert!(found.next().is_none(), "more than one check {prefix:?}");
    sql
}

const LEDGER_BELONGS: &str = "2. every charge in the gateway's ledger is one payment of ours";
const CHARGED_TWICE: &str = "2. no order charged twice at the gateway";
const PAYMENT_IN_LEDGER: &str = "2. every captured or refunded payment has its charge";

/// Each check of the gateway's ledger against the payments catches what it is for: a
/// consistent shop, corrupted one way at a time (in a transaction rolled back after), makes
/// exactly the checks named count it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_ledger_check_counts_its_violation() {
    let app = crate::spawn_app().await;
    let user = app.user("ledger@example.com").await;
    let product = app.product("Ledger", "6.50", 10).await;
    let paid = app.placed(&user, &[(&product, 2)]).await;
    let refunded = app.placed(&user, &[(&product, 1)]).await;
    for order in [&paid, &refunded] {
        let confirm = app
            .command(order, "confirm", json!({"payment_token": "tok_visa"}))
            .await;
        assert_eq!(confirm.status, 202, "{:#}", confirm.body);
    }
    let cancel = app
        .command(&refunded, "cancel", json!({"reason": "ledger test"}))
        .await;
    assert_eq!(cancel.status, 202, "{:#}", cancel.body);
    assert_hold(&app.db).await;
    app.stop().await;
    let payment =
        |order: &str| format!("(SELECT id FROM payments.payments WHERE order_id = '{order}')");
    let (captured, refunded) = (payment(&paid), payment(&refunded));
    let ledger_row = |key: &str, amount: &str| {
        format!(
            "INSERT INTO gateway.ledger (key, amount, outcome, reference, created_at, updated_at) \
             VALUES ({key}, {amount}, 'charged', 'sim_ch_corrupt', now(), now())"
        )
    };
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "a charge no payment of ours made",
            ledger_row("gen_random_uuid()", "6.50"),
            &[LEDGER_BELONGS],
        ),
        (
            "a charge whose payment was settled failed",
            format!("UPDATE payments.payments SET status = 'failed' WHERE id = {captured}"),
            &[LEDGER_BELONGS],
        ),
        (
            "a charge of another amount than its payment",
            format!("UPDATE gateway.ledger SET amount = amount + 1 WHERE key = {captured}"),
            &[LEDGER_BELONGS, PAYMENT_IN_LEDGER],
        ),
        (
            "a refund at the gateway of a payment still captured",
            format!("UPDATE gateway.ledger SET outcome = 'refunded' WHERE key = {captured}"),
            &[LEDGER_BELONGS, PAYMENT_IN_LEDGER],
        ),
        (
            "a captured payment whose key the gateway voided",
            format!(
                "UPDATE gateway.ledger SET outcome = 'voided', amount = NULL WHERE key = {captured}"
            ),
            &[PAYMENT_IN_LEDGER],
        ),
        (
            "a refunded payment the gateway knows nothing of",
            format!("DELETE FROM gateway.ledger WHERE key = {refunded}"),
            &[PAYMENT_IN_LEDGER],
        ),
        (
            "an order charged twice (a second charge under a failed payment)",
            format!(
                "WITH p AS (INSERT INTO payments.payments (id, order_id, amount, status, version, \
                 created_at, updated_at) VALUES (gen_random_uuid(), '{paid}', 13, 'failed', 1, \
                 now(), now()) RETURNING id) {}",
                ledger_row("(SELECT id FROM p)", "13")
            ),
            &[LEDGER_BELONGS, CHARGED_TWICE],
        ),
    ];
    let ledger_checks = [LEDGER_BELONGS, CHARGED_TWICE, PAYMENT_IN_LEDGER];
    let mut conn = app.db.connect().await;
    for (what, corruption, expected) in cases {
        conn.batch_execute("BEGIN").await.unwrap();
        conn.batch_execute(&corruption)
            .await
            .unwrap_or_else(|e| panic!("{what}: {corruption}: {e}"));
        for name in ledger_checks {
            let n = count(&mut conn, &check(name)).await;
            if expected.contains(&name) {
                assert!(n > 0, "{what}: {name:?} counts nothing");
            } else {
                assert_eq!(n, 0, "{what}: {name:?} counts it too");
            }
        }
        conn.batch_execute("ROLLBACK").await.unwrap();
    }
    for name in ledger_checks {
        assert_eq!(
            count(&mut conn, &check(name)).await,
            0,
            "{name:?} after it all"
        );
    }
}

/// A query returning one `bigint` named `n`, on `conn` (inside its transaction).
async fn count(conn: &mut diesel_async::AsyncPgConnection, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let row: N = diesel::sql_query(sql)
        .get_result(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.n
}
