ALTER TABLE orders.idempotency_keys ALTER COLUMN response DROP NOT NULL;
ALTER TABLE orders.orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders.orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('placing', 'pending', 'confirmed', 'shipped', 'delivered', 'cancelled',
                      'abandoned', 'rejected'));
