-- What deleting idempotency keys looks them up by (the order a failed placement frees its
-- key of: a full scan on every `insufficient_stock` before; the age the sweeper forgets
-- them at, `IDEMPOTENCY_TTL`), and what the pending-order limit counts by.
CREATE INDEX idempotency_keys_order_idx ON orders.idempotency_keys (order_id);
CREATE INDEX idempotency_keys_created_idx ON orders.idempotency_keys (created_at);

-- The pending orders of one customer, counted at every placement (`MAX_PENDING_ORDERS`).
CREATE INDEX orders_held_idx ON orders.orders (user_id) WHERE status IN ('placing', 'pending');
