-- The order read model, built by the orders_read projection from order, user and product
-- events only. Runs as role emporium_order_read with search_path = orders_read, in
-- READ_DATABASE_URL's database.
--
-- Every row belongs to a generation. Queries and the live projection use the one
-- generation whose state is `live`; a rebuild replays the event log into a `building`
-- generation beside it, then makes it live in one transaction and retires the old one.
CREATE TABLE orders_read.generations (
    id          integer PRIMARY KEY,
    state       text NOT NULL CHECK (state IN ('live', 'building', 'retired')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX orders_read_one_live_generation ON orders_read.generations (state) WHERE state = 'live';
CREATE UNIQUE INDEX orders_read_one_building_generation ON orders_read.generations (state) WHERE state = 'building';
INSERT INTO orders_read.generations (id, state) VALUES (1, 'live');

CREATE TABLE orders_read.orders (
    generation     integer NOT NULL,
    id             uuid NOT NULL,
    user_id        uuid NOT NULL,
    user_name      text,
    user_email     text,
    item_count     integer NOT NULL,
    total          numeric(20, 2) NOT NULL,
    status         text NOT NULL,
    cancel_reason  text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    version        bigint NOT NULL,
    PRIMARY KEY (generation, id)
);
-- Lists are newest first, optionally by user or status: each has an index that serves
-- the order and the filter together.
CREATE INDEX orders_read_orders_newest_idx ON orders_read.orders (generation, created_at DESC, id DESC);
CREATE INDEX orders_read_orders_user_idx ON orders_read.orders (generation, user_id, created_at DESC, id DESC);
CREATE INDEX orders_read_orders_status_idx ON orders_read.orders (generation, status, created_at DESC, id DESC);
CREATE INDEX orders_read_orders_user_status_idx
    ON orders_read.orders (generation, user_id, status, created_at DESC, id DESC);

CREATE TABLE orders_read.order_items (
    generation    integer NOT NULL,
    order_id      uuid NOT NULL,
    line          integer NOT NULL,
    product_id    uuid NOT NULL,
    product_name  text NOT NULL,
    quantity      bigint NOT NULL,
    price         numeric(12, 2) NOT NULL,
    PRIMARY KEY (generation, order_id, line),
    FOREIGN KEY (generation, order_id) REFERENCES orders_read.orders (generation, id) ON DELETE CASCADE
);
CREATE INDEX orders_read_items_product_idx ON orders_read.order_items (generation, product_id);

-- The latest user and product names seen in events, so a rename reaches every order.
CREATE TABLE orders_read.users (
    generation  integer NOT NULL,
    id          uuid NOT NULL,
    name        text NOT NULL,
    email       text NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (generation, id)
);

CREATE TABLE orders_read.products (
    generation  integer NOT NULL,
    id          uuid NOT NULL,
    name        text NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (generation, id)
);
