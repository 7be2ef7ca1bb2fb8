-- Runs as role emporium_gateway with search_path = gateway.
-- The simulated card processor's own ledger: what it did for each idempotency key (our
-- payment id). It stands for an external system, so it lives outside the payments
-- module's schema and transactions, and knows nothing of payments' tables.
CREATE TABLE gateway.ledger (
    -- The caller's idempotency key: asking again with it answers this row's outcome.
    key         uuid PRIMARY KEY,
    amount      numeric(12, 2) NOT NULL CHECK (amount > 0),
    outcome     text NOT NULL CHECK (outcome IN ('charged', 'declined', 'failed', 'refunded')),
    -- The gateway's own id for the charge.
    reference   text NOT NULL,
    -- Why a declined or failed charge took nothing.
    reason      text,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
