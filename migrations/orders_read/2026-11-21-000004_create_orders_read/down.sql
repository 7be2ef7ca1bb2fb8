DROP TABLE orders_read.products;
DROP TABLE orders_read.users;
DROP TABLE orders_read.order_items;
DROP TABLE orders_read.orders;
DROP TABLE orders_read.generations;
