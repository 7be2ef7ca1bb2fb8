-- The reconciler's schedule: when it may next ask the gateway about a pending payment (or
-- an unconfirmed refund), and how often it has asked. Set when the payment is recorded
-- pending (or the refund asked for), pushed back with each check.
ALTER TABLE payments.payments
    ADD COLUMN check_after timestamptz,
    ADD COLUMN checks integer NOT NULL DEFAULT 0 CHECK (checks >= 0);

DROP INDEX payments.payments_unsettled_idx;
CREATE INDEX payments_to_check_idx ON payments.payments (check_after)
    WHERE status = 'pending' OR (status = 'captured' AND refund_requested_at IS NOT NULL);
