-- List totals without counting: the number of orders per generation, user and status,
-- kept by triggers in the same transaction as every write to orders_read.orders, so a
-- list's `total` is a sum of at most five rows however many orders match. The rows
-- under the nil user id count every user's orders (the lists without a user filter).
-- Rows that reach zero are deleted, so a retired generation's rows go with its orders.
-- (No CHECK on n: a decrement is proposed as a row of its own, n < 0, before it meets the
-- row it decrements.)
CREATE TABLE orders_read.order_counts (
    generation  integer NOT NULL,
    user_id     uuid NOT NULL,
    status      text NOT NULL,
    n           bigint NOT NULL,
    PRIMARY KEY (generation, user_id, status)
);
CREATE INDEX order_counts_zero_idx ON orders_read.order_counts (generation) WHERE n = 0;

-- One statement-level trigger function for inserts, status changes and deletes: +1 for
-- every new row, -1 for every old one, summed per (generation, user, status) and once more
-- under the nil user. Each generation has one writer at a time (the live projection, a
-- rebuild, or the cleaner of a retired one), so these rows are never contended.
CREATE FUNCTION orders_read.count_orders() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    deltas orders_read.order_counts[] := '{}';
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        deltas := deltas || ARRAY(
            SELECT ROW(r.generation, r.user_id, r.status, 1)::orders_read.order_counts
            FROM new_rows r);
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        deltas := deltas || ARRAY(
            SELECT ROW(r.generation, r.user_id, r.status, -1)::orders_read.order_counts
            FROM old_rows r);
    END IF;
    INSERT INTO orders_read.order_counts AS c (generation, user_id, status, n)
    SELECT d.generation, w.user_id, d.status, sum(d.n)
    FROM unnest(deltas) AS d
    CROSS JOIN LATERAL (VALUES (d.user_id), ('00000000-0000-0000-0000-000000000000'::uuid))
        AS w(user_id)
    GROUP BY d.generation, w.user_id, d.status
    HAVING sum(d.n) <> 0
    ORDER BY 1, 2, 3
    ON CONFLICT (generation, user_id, status) DO UPDATE SET n = c.n + excluded.n;
    DELETE FROM orders_read.order_counts
    WHERE n = 0 AND generation IN (SELECT DISTINCT d.generation FROM unnest(deltas) AS d);
    RETURN NULL;
END
$$;

CREATE TRIGGER orders_counted_on_insert AFTER INSERT ON orders_read.orders
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION orders_read.count_orders();
CREATE TRIGGER orders_counted_on_update AFTER UPDATE ON orders_read.orders
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION orders_read.count_orders();
CREATE TRIGGER orders_counted_on_delete AFTER DELETE ON orders_read.orders
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION orders_read.count_orders();

-- The orders already there (the triggers hold off writers until this commits).
INSERT INTO orders_read.order_counts (generation, user_id, status, n)
SELECT o.generation, w.user_id, o.status, count(*)
FROM orders_read.orders o
CROSS JOIN LATERAL (VALUES (o.user_id), ('00000000-0000-0000-0000-000000000000'::uuid))
    AS w(user_id)
GROUP BY o.generation, w.user_id, o.status;
