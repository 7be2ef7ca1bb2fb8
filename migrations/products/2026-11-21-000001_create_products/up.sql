-- Runs as role emporium_products with search_path = products.
CREATE TABLE products.products (
    id           uuid PRIMARY KEY,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description  text NOT NULL CHECK (length(description) <= 5000),
    price        numeric(12, 2) NOT NULL CHECK (price > 0),
    stock        bigint NOT NULL CHECK (stock >= 0),
    reserved     bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
-- The catalog lists newest first; ids are v7 (time-ordered).
CREATE INDEX products_newest_idx ON products.products (id DESC);

-- One row per order that ever reserved stock: repeating a reservation is a no-op.
CREATE TABLE products.reservations (
    order_id    uuid PRIMARY KEY,
    status      text NOT NULL CHECK (status IN ('reserved', 'committed', 'released', 'returned')),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE products.reservation_lines (
    order_id    uuid NOT NULL REFERENCES products.reservations (order_id),
    product_id  uuid NOT NULL REFERENCES products.products (id),
    quantity    bigint NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX reservation_lines_product_idx ON products.reservation_lines (product_id);
