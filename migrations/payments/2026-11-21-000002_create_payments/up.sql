-- Runs as role emporium_payments with search_path = payments.
-- One row per attempt to charge an order: any number of declined ones, and at most one
-- that the gateway captured (and that may later be refunded).
CREATE TABLE payments.payments (
    id                 uuid PRIMARY KEY,
    order_id           uuid NOT NULL,
    amount             numeric(12, 2) NOT NULL CHECK (amount > 0),
    status             text NOT NULL CHECK (status IN ('captured', 'declined', 'refunded')),
    -- The gateway's own id for the charge; null for a declined one.
    gateway_reference  text,
    -- 1 when recorded, 2 once refunded: the aggregate_version of its events.
    version            bigint NOT NULL DEFAULT 1 CHECK (version > 0),
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);

-- At most one captured (or refunded) payment per order, ever. The service serializes the
-- charges of one order with an advisory lock; this is the database's own guard.
CREATE UNIQUE INDEX payments_one_settled_per_order_idx
    ON payments.payments (order_id) WHERE status <> 'declined';

-- `GET /payments?order_id=` and refunds find an order's payments.
CREATE INDEX payments_order_idx ON payments.payments (order_id);
