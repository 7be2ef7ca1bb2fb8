ALTER TABLE orders.orders
    DROP CONSTRAINT orders_confirm_fence_whole,
    DROP COLUMN confirm_until,
    DROP COLUMN confirm_attempt;
