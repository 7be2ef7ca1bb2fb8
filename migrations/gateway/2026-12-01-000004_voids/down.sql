DELETE FROM gateway.ledger WHERE outcome = 'voided';
ALTER TABLE gateway.ledger DROP CONSTRAINT ledger_voided_has_no_amount;
ALTER TABLE gateway.ledger ALTER COLUMN amount SET NOT NULL;
ALTER TABLE gateway.ledger DROP CONSTRAINT ledger_outcome_check;
ALTER TABLE gateway.ledger ADD CONSTRAINT ledger_outcome_check
    CHECK (outcome IN ('charged', 'declined', 'failed', 'refunded'));
