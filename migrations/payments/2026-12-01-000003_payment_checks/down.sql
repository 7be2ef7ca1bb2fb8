DROP INDEX payments.payments_to_check_idx;
CREATE INDEX payments_unsettled_idx ON payments.payments (updated_at)
    WHERE status = 'pending' OR (status = 'captured' AND refund_requested_at IS NOT NULL);
ALTER TABLE payments.payments DROP COLUMN checks, DROP COLUMN check_after;
