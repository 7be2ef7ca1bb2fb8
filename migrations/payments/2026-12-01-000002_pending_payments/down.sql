DROP INDEX payments.payments_unsettled_idx;
DROP INDEX payments.payments_one_live_per_order_idx;
DELETE FROM payments.payments WHERE status IN ('pending', 'failed');
CREATE UNIQUE INDEX payments_one_settled_per_order_idx
    ON payments.payments (order_id) WHERE status <> 'declined';
ALTER TABLE payments.payments
    DROP COLUMN refund_requested_at,
    DROP CONSTRAINT payments_version_check,
    ADD CONSTRAINT payments_version_check CHECK (version > 0),
    DROP CONSTRAINT payments_status_check,
    ADD CONSTRAINT payments_status_check CHECK (status IN ('captured', 'declined', 'refunded'));
