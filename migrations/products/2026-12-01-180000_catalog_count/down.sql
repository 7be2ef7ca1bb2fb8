DROP TRIGGER products_counted_on_truncate ON products.products;
DROP TRIGGER products_counted_on_delete ON products.products;
DROP TRIGGER products_counted_on_insert ON products.products;
DROP FUNCTION products.count_products();
DROP TABLE products.product_count;
