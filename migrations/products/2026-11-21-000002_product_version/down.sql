ALTER TABLE products.products DROP COLUMN version;
