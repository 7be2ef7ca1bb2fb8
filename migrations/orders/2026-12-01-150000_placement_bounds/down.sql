DROP INDEX orders.orders_held_idx;
DROP INDEX orders.idempotency_keys_created_idx;
DROP INDEX orders.idempotency_keys_order_idx;
