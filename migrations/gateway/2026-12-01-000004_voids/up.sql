-- Runs as role emporium_gateway with search_path = gateway.
-- A key can be voided (as a real gateway lets a caller cancel a payment intent): the ledger
-- keeps a tombstone, outcome 'voided', so that a charge arriving later under that key takes
-- nothing. A void knows no amount: a tombstone has none, and every other entry has one.
ALTER TABLE gateway.ledger DROP CONSTRAINT ledger_outcome_check;
ALTER TABLE gateway.ledger ADD CONSTRAINT ledger_outcome_check
    CHECK (outcome IN ('charged', 'declined', 'failed', 'refunded', 'voided'));
ALTER TABLE gateway.ledger ALTER COLUMN amount DROP NOT NULL;
ALTER TABLE gateway.ledger ADD CONSTRAINT ledger_voided_has_no_amount
    CHECK ((outcome = 'voided') = (amount IS NULL));
