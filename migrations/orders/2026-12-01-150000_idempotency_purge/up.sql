-- What deletes idempotency keys looks them up by: the order a failed placement frees its
-- key of (a full scan on every `insufficient_stock` before), and the age the sweeper
-- forgets them at (`IDEMPOTENCY_TTL`).
CREATE INDEX idempotency_keys_order_idx ON orders.idempotency_keys (order_id);
CREATE INDEX idempotency_keys_created_idx ON orders.idempotency_keys (created_at);
