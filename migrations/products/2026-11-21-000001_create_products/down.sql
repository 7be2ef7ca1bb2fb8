DROP TABLE products.reservation_lines;
DROP TABLE products.reservations;
DROP TABLE products.products;
