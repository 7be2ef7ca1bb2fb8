DROP TRIGGER orders_counted_on_delete ON orders_read.orders;
DROP TRIGGER orders_counted_on_update ON orders_read.orders;
DROP TRIGGER orders_counted_on_insert ON orders_read.orders;
DROP FUNCTION orders_read.count_orders();
DROP TABLE orders_read.order_counts;
