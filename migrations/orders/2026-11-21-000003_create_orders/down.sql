DROP TABLE orders.idempotency_keys;
DROP TABLE orders.order_lines;
DROP TABLE orders.orders;
