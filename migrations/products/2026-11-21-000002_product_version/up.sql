-- Aggregate version, carried by every products event.
ALTER TABLE products.products ADD COLUMN version bigint NOT NULL DEFAULT 1;
