-- The catalog's size without counting it: one row, kept by triggers in the same
-- transaction as every insert or delete of a product, so the total of `GET /products` is
-- one row however large the catalog. (Concurrent creations queue on this row for the rest
-- of their short transactions; catalog writes are staff work, not traffic.)
CREATE TABLE products.product_count (
    single  boolean PRIMARY KEY DEFAULT true CHECK (single),
    n       bigint NOT NULL CHECK (n >= 0)
);

CREATE FUNCTION products.count_products() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE products.product_count SET n = n + (SELECT count(*) FROM new_rows);
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE products.product_count SET n = n - (SELECT count(*) FROM old_rows);
    ELSE
        UPDATE products.product_count SET n = 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER products_counted_on_insert AFTER INSERT ON products.products
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION products.count_products();
CREATE TRIGGER products_counted_on_delete AFTER DELETE ON products.products
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION products.count_products();
CREATE TRIGGER products_counted_on_truncate AFTER TRUNCATE ON products.products
    FOR EACH STATEMENT EXECUTE FUNCTION products.count_products();

-- The products already there (the triggers hold off writers until this commits).
INSERT INTO products.product_count (n) SELECT count(*) FROM products.products;
