//! The contract's invariants 1-4 ("Invariants that hold after any crash and restart"), as
//! SQL that counts violations. They read every module's schema, and the simulated payment
//! gateway's ledger (schema `gateway`: what the gateway says it took, against our
//! payments), so they run as a superuser outside the app: in the app's test suite and in
//! `cargo xtask chaos`, never in a module. Beside the checks, two probes for whoever waits
//! on the system: payments background work has yet to settle, and gateway calls in flight.
//!
//! Raw SQL by design: the checks join every module's schemas and run over any Postgres
//! client (tokio-postgres in `xtask`, diesel in the app suite); no diesel DSL reaches here.

use std::time::Duration;

pub mod stream;

// The spellings of the states this SQL reads, written once and formatted in. This crate
// depends on nothing (`cargo xtask`, which links it, builds without the modules), so it
// cannot call the types' `as_str`; `tests::spellings_are_the_types` holds each order and
// payment status and each ledger outcome to its type (dev-dependencies), and the read
// model's generation state is pinned by the `CHECK` of migrations/orders_read.
const PENDING: &str = "pending";
const CONFIRMED: &str = "confirmed";
const SHIPPED: &str = "shipped";
const DELIVERED: &str = "delivered";
const CANCELLED: &str = "cancelled";
const CAPTURED: &str = "captured";
const DECLINED: &str = "declined";
const FAILED: &str = "failed";
const REFUNDED: &str = "refunded";
const LEDGER_CHARGED: &str = "charged";
const LEDGER_REFUNDED: &str = "refunded";
const LIVE_GENERATION: &str = "live";

/// `('confirmed', 'shipped', 'delivered')`: orders that were paid for.
fn paid() -> String {
    format!("('{CONFIRMED}', '{SHIPPED}', '{DELIVERED}')")
}

/// Every status a client can see (the write model also holds placement states).
fn visible() -> String {
    format!("('{PENDING}', '{CONFIRMED}', '{SHIPPED}', '{DELIVERED}', '{CANCELLED}')")
}

/// The payment status that matches the ledger outcome `outcome` (a column of
/// `gateway.ledger`): a charge the gateway holds is a captured payment, one it gave back a
/// refunded one; any other outcome took nothing and matches no status.
fn status_of(outcome: &str) -> String {
    format!(
        "CASE {outcome} WHEN '{LEDGER_CHARGED}' THEN '{CAPTURED}' WHEN '{LEDGER_REFUNDED}' THEN '{REFUNDED}' END"
    )
}

/// The live generation's id.
fn live() -> String {
    format!("(SELECT id FROM orders_read.generations WHERE state = '{LIVE_GENERATION}')")
}

/// `(what must hold, a query returning one bigint column n: how many violations)`. They
/// hold once commands have stopped and background work has settled.
pub fn checks() -> Vec<(&'static str, String)> {
    let (paid, visible, live) = (paid(), visible(), live());
    let (ledger_status, payment_status) = (status_of("g.outcome"), status_of("l.outcome"));
    vec![
        (
            "1. stock conservation: initial + restocked = stock + reserved + held by paid orders, none negative",
            format!(
                "WITH initial AS (SELECT aggregate_id AS id, (payload->>'stock')::bigint AS q FROM products.events \
                   WHERE event_type = 'product.created'), \
                 restocked AS (SELECT aggregate_id AS id, sum((payload->>'quantity')::bigint) AS q FROM products.events \
                   WHERE event_type = 'product.restocked' GROUP BY 1), \
                 held AS (SELECT l.product_id AS id, sum(l.quantity) AS q FROM orders.orders o \
                   JOIN orders.order_lines l ON l.order_id = o.id \
                   WHERE o.status IN {paid} GROUP BY 1) \
                 SELECT count(*) AS n FROM products.products p JOIN initial i ON i.id = p.id \
                 LEFT JOIN restocked r ON r.id = p.id LEFT JOIN held h ON h.id = p.id \
                 WHERE i.q + coalesce(r.q, 0) <> p.stock + p.reserved + coalesce(h.q, 0) OR p.stock < 0 OR p.reserved < 0"
            ),
        ),
        (
            "1. reserved equals what pending orders hold",
            format!(
                "SELECT count(*) AS n FROM products.products p WHERE p.reserved <> coalesce((SELECT sum(l.quantity) \
                 FROM orders.orders o JOIN orders.order_lines l ON l.order_id = o.id \
                 WHERE o.status = '{PENDING}' AND l.product_id = p.id), 0)"
            ),
        ),
        (
            "2. every paid order has exactly one captured payment equal to its total",
            format!(
                "SELECT count(*) AS n FROM orders.orders o WHERE o.status IN {paid} \
                 AND (SELECT count(*) FROM payments.payments p WHERE p.order_id = o.id AND p.status = '{CAPTURED}' \
                      AND p.amount = o.total) <> 1"
            ),
        ),
        (
            "2. no cancelled or unplaced order keeps a captured payment",
            format!(
                "SELECT count(*) AS n FROM payments.payments p JOIN orders.orders o ON o.id = p.order_id \
                 WHERE p.status = '{CAPTURED}' AND o.status NOT IN {paid}"
            ),
        ),
        (
            "2. at most one payment per order that is not declined or failed",
            format!(
                "SELECT count(*) AS n FROM (SELECT order_id FROM payments.payments \
                 WHERE status NOT IN ('{DECLINED}', '{FAILED}') \
                 GROUP BY order_id HAVING count(*) > 1) AS doubled"
            ),
        ),
        (
            "2. every charge in the gateway's ledger is one payment of ours, captured if charged, refunded if refunded, of the same amount",
            format!(
                "SELECT count(*) AS n FROM gateway.ledger g \
                 WHERE g.outcome IN ('{LEDGER_CHARGED}', '{LEDGER_REFUNDED}') AND NOT EXISTS (\
                   SELECT 1 FROM payments.payments p WHERE p.id = g.key \
                   AND p.status = {ledger_status} AND p.amount = g.amount)"
            ),
        ),
        (
            "2. no order charged twice at the gateway: at most one ledger charge not refunded per order",
            format!(
                "SELECT count(*) AS n FROM (SELECT p.order_id FROM gateway.ledger g \
                 JOIN payments.payments p ON p.id = g.key WHERE g.outcome = '{LEDGER_CHARGED}' \
                 GROUP BY p.order_id HAVING count(*) > 1) AS doubled"
            ),
        ),
        (
            "2. every captured or refunded payment has its charge in the gateway's ledger, in the matching state, of the same amount",
            format!(
                "SELECT count(*) AS n FROM payments.payments p \
                 WHERE p.status IN ('{CAPTURED}', '{REFUNDED}') AND NOT EXISTS (\
                   SELECT 1 FROM gateway.ledger l WHERE l.key = p.id \
                   AND {payment_status} = p.status AND l.amount = p.amount)"
            ),
        ),
        (
            "3. read model orders equal the write model",
            format!(
                "SELECT count(*) AS n FROM (SELECT * FROM orders.orders WHERE status IN {visible}) w \
                 FULL JOIN (SELECT * FROM orders_read.orders WHERE generation = {live}) r ON r.id = w.id \
                 WHERE w.id IS NULL OR r.id IS NULL OR r.status <> w.status OR r.version <> w.version \
                 OR r.total <> w.total OR r.user_id <> w.user_id"
            ),
        ),
        (
            "3. read model items equal the write model",
            format!(
                "SELECT count(*) AS n FROM (SELECT l.* FROM orders.order_lines l JOIN orders.orders o ON o.id = l.order_id \
                   WHERE o.status IN {visible}) w \
                 FULL JOIN (SELECT * FROM orders_read.order_items WHERE generation = {live}) r \
                   ON (r.order_id, r.line) = (w.order_id, w.line) \
                 WHERE w.order_id IS NULL OR r.order_id IS NULL OR r.product_id <> w.product_id \
                 OR r.quantity <> w.quantity OR r.price <> w.price"
            ),
        ),
        (
            "3. read model user names and emails equal the users' current ones",
            format!(
                "SELECT count(*) AS n FROM (SELECT * FROM orders_read.orders WHERE generation = {live}) r \
                 JOIN users.users w ON w.id = r.user_id \
                 LEFT JOIN orders_read.users u ON (u.generation, u.id) = (r.generation, r.user_id) \
                 WHERE coalesce(u.name, r.user_name) IS DISTINCT FROM w.name \
                 OR coalesce(u.email, r.user_email) IS DISTINCT FROM w.email"
            ),
        ),
        (
            "3. read model product names equal the products' current ones",
            format!(
                "SELECT count(*) AS n FROM (SELECT * FROM orders_read.order_items WHERE generation = {live}) r \
                 JOIN products.products w ON w.id = r.product_id \
                 LEFT JOIN orders_read.products p ON (p.generation, p.id) = (r.generation, r.product_id) \
                 WHERE coalesce(p.name, r.product_name) <> w.name"
            ),
        ),
        (
            "4. every subscription applied every event of its source exactly once",
            "SELECT count(*) AS n FROM (\
               SELECT subscriber, source, applied FROM orders_read.checkpoints \
               UNION ALL SELECT subscriber, source, applied FROM orders.checkpoints) c \
             WHERE c.applied <> CASE c.source \
               WHEN 'orders' THEN (SELECT count(*) FROM orders.events) \
               WHEN 'users' THEN (SELECT count(*) FROM users.events) \
               WHEN 'products' THEN (SELECT count(*) FROM products.events) \
               WHEN 'payments' THEN (SELECT count(*) FROM payments.events) END"
                .to_owned(),
        ),
        (
            "4. nothing parked as a dead letter",
            "SELECT (SELECT count(*) FROM orders_read.dead_letters) + (SELECT count(*) FROM orders.dead_letters) AS n"
                .to_owned(),
        ),
    ]
}

/// A query returning one bigint column n: how many payments background work has yet to
/// settle (`pending`, or `captured` with a refund asked for and not confirmed). The checks
/// above are meant for when it is 0.
pub fn unsettled_payments() -> String {
    format!(
        "SELECT count(*) AS n FROM payments.payments WHERE status = '{PENDING}' \
         OR (status = '{CAPTURED}' AND refund_requested_at IS NOT NULL)"
    )
}

/// A query returning one bigint column n: how many gateway calls are in flight now, seen
/// from the database: payments `pending` whose key the gateway's ledger already holds (the
/// call reached it; its answer is not settled), recorded between `after` and `deadline`
/// ago (`after` passes over the calls answered at once; before `deadline` the charge's own
/// call has not given up yet).
pub fn gateway_calls_in_flight(after: Duration, deadline: Duration) -> String {
    format!(
        "SELECT count(*) AS n FROM payments.payments p WHERE p.status = '{PENDING}' \
         AND p.created_at BETWEEN now() - interval '{} milliseconds' AND now() - interval '{} milliseconds' \
         AND EXISTS (SELECT 1 FROM gateway.ledger g WHERE g.key = p.id)",
        deadline.as_millis(),
        after.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use orders_api::OrderStatus;
    use payments::LedgerOutcome;
    use payments_api::PaymentStatus;

    #[test]
    fn spellings_are_the_types() {
        let order = [PENDING, CONFIRMED, SHIPPED, DELIVERED, CANCELLED];
        assert_eq!(order, OrderStatus::ALL.map(|s| s.as_str()));
        assert_eq!(PENDING, PaymentStatus::Pending.as_str());
        assert_eq!(
            paid(),
            format!(
                "('{}', '{}', '{}')",
                OrderStatus::Confirmed.as_str(),
                OrderStatus::Shipped.as_str(),
                OrderStatus::Delivered.as_str()
            )
        );
        assert_eq!(CAPTURED, PaymentStatus::Captured.as_str());
        assert_eq!(DECLINED, PaymentStatus::Declined.as_str());
        assert_eq!(FAILED, PaymentStatus::Failed.as_str());
        assert_eq!(REFUNDED, PaymentStatus::Refunded.as_str());
        assert_eq!(LEDGER_CHARGED, LedgerOutcome::Charged.as_str());
        assert_eq!(LEDGER_REFUNDED, LedgerOutcome::Refunded.as_str());
    }
}
