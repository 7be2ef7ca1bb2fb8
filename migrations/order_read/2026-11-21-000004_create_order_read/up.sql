-- The order read model, built by the order_read projection from order, user and product
-- events only. Runs as role emporium_order_read with search_path = order_read, in
-- READ_DATABASE_URL's database.
CREATE TABLE order_read.orders (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL,
    user_name      text,
    user_email     text,
    item_count     integer NOT NULL,
    total          numeric(20, 2) NOT NULL,
    status         text NOT NULL,
    cancel_reason  text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    version        bigint NOT NULL
);
-- Lists are newest first, optionally by user or status: each has an index that serves
-- the order and the filter together.
CREATE INDEX order_read_orders_newest_idx ON order_read.orders (created_at DESC, id DESC);
CREATE INDEX order_read_orders_user_idx ON order_read.orders (user_id, created_at DESC, id DESC);
CREATE INDEX order_read_orders_status_idx ON order_read.orders (status, created_at DESC, id DESC);
CREATE INDEX order_read_orders_user_status_idx ON order_read.orders (user_id, status, created_at DESC, id DESC);

CREATE TABLE order_read.order_items (
    order_id      uuid NOT NULL REFERENCES order_read.orders (id) ON DELETE CASCADE,
    line          integer NOT NULL,
    product_id    uuid NOT NULL,
    product_name  text NOT NULL,
    quantity      bigint NOT NULL,
    price         numeric(12, 2) NOT NULL,
    PRIMARY KEY (order_id, line)
);
CREATE INDEX order_read_items_product_idx ON order_read.order_items (product_id);

-- The latest user and product names seen in events, so a rename reaches every order.
CREATE TABLE order_read.users (
    id       uuid PRIMARY KEY,
    name     text NOT NULL,
    email    text NOT NULL,
    version  bigint NOT NULL
);

CREATE TABLE order_read.products (
    id       uuid PRIMARY KEY,
    name     text NOT NULL,
    version  bigint NOT NULL
);
