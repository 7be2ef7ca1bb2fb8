DROP TABLE order_read.products;
DROP TABLE order_read.users;
DROP TABLE order_read.order_items;
DROP TABLE order_read.orders;
DROP TABLE order_read.generations;
