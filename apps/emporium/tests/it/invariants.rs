//! The contract's invariants 1-4 (crate `invariants`), checked directly in the database
//! (the test connects as a superuser; the app's modules cannot read each other's schemas).

use std::time::{Duration, Instant};

use kernel::testing::TestDatabase;

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
