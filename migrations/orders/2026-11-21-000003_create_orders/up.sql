-- The order write model. Runs as role emporium_orders with search_path = orders.
--
-- `placing`, `abandoned` and `rejected` are internal: an order is `placing` from the moment
-- it is recorded until its stock is reserved (then `pending`); a placement that failed is
-- `rejected`, one that a crash interrupted is `abandoned` until its reservation is released.
-- Commands and queries never show them.
CREATE TABLE orders.orders (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL,
    status         text NOT NULL CHECK (status IN ('placing', 'pending', 'confirmed', 'shipped', 'delivered',
                                                   'cancelled', 'abandoned', 'rejected')),
    total          numeric(20, 2) NOT NULL CHECK (total >= 0),
    payment_id     uuid,
    cancel_reason  text,
    version        bigint NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
-- The sweeper's look-ups: expired pending orders, interrupted placements.
CREATE INDEX orders_sweep_idx ON orders.orders (status, created_at)
    WHERE status IN ('placing', 'pending', 'abandoned');

CREATE TABLE orders.order_lines (
    order_id      uuid NOT NULL REFERENCES orders.orders (id),
    line          integer NOT NULL,
    product_id    uuid NOT NULL,
    product_name  text NOT NULL,
    quantity      bigint NOT NULL CHECK (quantity BETWEEN 1 AND 10000),
    price         numeric(12, 2) NOT NULL CHECK (price > 0),
    PRIMARY KEY (order_id, line)
);

-- `Idempotency-Key` of order creation: the request it was first used with, the order it
-- made, and the answer once there is one.
CREATE TABLE orders.idempotency_keys (
    key         text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    request     jsonb NOT NULL,
    order_id    uuid NOT NULL,
    response    jsonb,
    created_at  timestamptz NOT NULL
);
