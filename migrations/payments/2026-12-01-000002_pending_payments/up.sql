-- A payment is recorded `pending` (version 0, no event) before the gateway is asked, and
-- settled afterwards: `captured`, `declined` or `failed` (version 1, with its event).
ALTER TABLE payments.payments
    DROP CONSTRAINT payments_status_check,
    ADD CONSTRAINT payments_status_check
        CHECK (status IN ('pending', 'captured', 'declined', 'failed', 'refunded')),
    DROP CONSTRAINT payments_version_check,
    ADD CONSTRAINT payments_version_check CHECK (version >= 0),
    -- When a refund of this captured payment was first asked for: the intent, recorded
    -- before the gateway is called, so an unanswered refund is retried.
    ADD COLUMN refund_requested_at timestamptz;

-- At most one pending, captured or refunded payment per order, ever at once: a second
-- charge cannot start while one is pending. The service serializes the charges of one
-- order with an advisory lock; this is the database's own guard.
DROP INDEX payments.payments_one_settled_per_order_idx;
CREATE UNIQUE INDEX payments_one_live_per_order_idx
    ON payments.payments (order_id) WHERE status NOT IN ('declined', 'failed');

-- What is left to settle: pending payments, and refunds asked for but not confirmed.
CREATE INDEX payments_unsettled_idx ON payments.payments (updated_at)
    WHERE status = 'pending' OR (status = 'captured' AND refund_requested_at IS NOT NULL);
