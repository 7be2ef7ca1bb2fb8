-- The fence a confirm puts on a pending order before it charges: while `confirm_until` is
-- in the future, the order is being paid for by the confirm `confirm_attempt`, and no other
-- confirm, no cancel and no expiry touches it. The confirm lifts the fence when it ends
-- (any save of the order lifts it too); a confirm that crashed leaves it to run out.
ALTER TABLE orders.orders
    ADD COLUMN confirm_attempt uuid,
    ADD COLUMN confirm_until timestamptz,
    ADD CONSTRAINT orders_confirm_fence_whole CHECK ((confirm_attempt IS NULL) = (confirm_until IS NULL));
