-- One chunk of the bulk seed (see sql.rs): the orders in seed_plan, with every module's
-- rows and events, as the API's placement and commands write them. `{offset}` is the
-- number of users and products, whose rows come first in time.

DROP TABLE IF EXISTS seed_orders, seed_steps;

-- Each order: its id, customer, time, status and version after its last command, and
-- its payment if it was confirmed.
CREATE TEMP TABLE seed_orders AS
SELECT p.i, t.at, pg_temp.uuid7(t.at) AS id, u.id AS user_id, u.name AS user_name,
       u.email AS user_email, p.steps,
       CASE p.steps[cardinality(p.steps)]
           WHEN 'cancel' THEN 'cancelled' WHEN 'confirm' THEN 'confirmed'
           WHEN 'ship' THEN 'shipped' WHEN 'deliver' THEN 'delivered' ELSE 'pending' END AS status,
       1 + cardinality(p.steps) AS version,
       CASE WHEN 'confirm' = ANY (p.steps) THEN pg_temp.uuid7(t.at + interval '100 us') END
           AS payment_id,
       (SELECT sum(sp.price * l.quantity) FROM seed_plan_lines l
        JOIN seed_products sp ON sp.idx = l.product_idx WHERE l.i = p.i) AS total,
       (SELECT count(*) FROM seed_plan_lines l WHERE l.i = p.i) AS item_count
FROM seed_plan p
JOIN seed_users u ON u.idx = p.user_idx
CROSS JOIN seed_settings s
CROSS JOIN LATERAL (SELECT s.t0 + ({offset} + p.i) * interval '1 ms' AS at) AS t;
CREATE UNIQUE INDEX ON seed_orders (i);
ANALYZE seed_orders;

-- Each request: the placement (k = 1), then each command; the version it leaves, its
-- time, its correlation id, and the status it found.
CREATE TEMP TABLE seed_steps AS
SELECT o.i, c.k::int AS k, c.command, o.at + (c.k - 1) * interval '100 us' AS at,
       pg_temp.uuid7(o.at + (c.k - 1) * interval '100 us')::text AS correlation,
       CASE lag(c.command) OVER (PARTITION BY o.i ORDER BY c.k)
           WHEN 'place' THEN 'pending' WHEN 'confirm' THEN 'confirmed'
           WHEN 'ship' THEN 'shipped' END AS previous_status
FROM seed_orders o
CROSS JOIN LATERAL unnest(ARRAY['place'] || o.steps) WITH ORDINALITY AS c(command, k);
CREATE INDEX ON seed_steps (i, command);
ANALYZE seed_steps;

-- The orders module: orders, lines, events.
INSERT INTO orders.orders (id, user_id, status, total, payment_id, cancel_reason, version,
    created_at, updated_at)
SELECT o.id, o.user_id, o.status, o.total, o.payment_id,
       CASE o.status WHEN 'cancelled' THEN s.cancel_reason END, o.version,
       o.at, o.at + (o.version - 1) * interval '100 us'
FROM seed_orders o, seed_settings s ORDER BY o.i;

INSERT INTO orders.order_lines (order_id, line, product_id, product_name, quantity, price)
SELECT o.id, l.line, p.id, p.name, l.quantity, p.price
FROM seed_plan_lines l JOIN seed_orders o USING (i) JOIN seed_products p ON p.idx = l.product_idx
ORDER BY l.i, l.line;

INSERT INTO orders.events (event_id, event_type, aggregate_id, aggregate_version, occurred_at,
    schema_version, payload, actor_kind, actor_id, correlation_id)
SELECT pg_temp.uuid7(st.at),
       CASE st.command WHEN 'place' THEN 'order.created' WHEN 'confirm' THEN 'order.confirmed'
           WHEN 'cancel' THEN 'order.cancelled' WHEN 'ship' THEN 'order.shipped'
           ELSE 'order.delivered' END,
       o.id, st.k, st.at, CASE st.command WHEN 'place' THEN 2 ELSE 1 END,
       CASE st.command
           WHEN 'place' THEN jsonb_build_object(
               'items', (SELECT jsonb_agg(jsonb_build_object('price', p.price::text,
                             'quantity', l.quantity, 'product_id', p.id, 'product_name', p.name,
                             'subtotal', (p.price * l.quantity)::text)
                             ORDER BY l.line)
                         FROM seed_plan_lines l JOIN seed_products p ON p.idx = l.product_idx
                         WHERE l.i = o.i),
               'total', o.total::text, 'user_id', o.user_id, 'user_name', o.user_name,
               'user_email', o.user_email)
           WHEN 'confirm' THEN jsonb_build_object('amount', o.total::text, 'payment_id', o.payment_id)
           WHEN 'cancel' THEN jsonb_build_object('reason', s.cancel_reason,
               'previous_status', st.previous_status)
           ELSE '{}'::jsonb END,
       'user', s.staff, st.correlation
FROM seed_steps st JOIN seed_orders o USING (i) CROSS JOIN seed_settings s
ORDER BY st.at, st.i, st.k;

-- The products module: a reservation per order (held while pending, committed once
-- confirmed, released by a cancel before payment, returned by one after), and the stock
-- it takes.
INSERT INTO products.reservations (order_id, status, created_at, updated_at)
SELECT o.id,
       CASE WHEN o.status = 'pending' THEN 'reserved'
            WHEN o.status <> 'cancelled' THEN 'committed'
            WHEN o.payment_id IS NULL THEN 'released' ELSE 'returned' END,
       o.at, o.at + (o.version - 1) * interval '100 us'
FROM seed_orders o ORDER BY o.i;

INSERT INTO products.reservation_lines (order_id, product_id, quantity)
SELECT o.id, p.id, l.quantity
FROM seed_plan_lines l JOIN seed_orders o USING (i) JOIN seed_products p ON p.idx = l.product_idx
ORDER BY l.i, l.line;

UPDATE products.products AS p
SET stock = p.stock - d.taken, reserved = p.reserved + d.held, updated_at = greatest(p.updated_at, d.at)
FROM (SELECT sp.id,
             coalesce(sum(l.quantity) FILTER (WHERE o.status <> 'cancelled'), 0) AS taken,
             coalesce(sum(l.quantity) FILTER (WHERE o.status = 'pending'), 0) AS held,
             max(o.at + (o.version - 1) * interval '100 us') AS at
      FROM seed_plan_lines l JOIN seed_orders o USING (i)
      JOIN seed_products sp ON sp.idx = l.product_idx
      GROUP BY sp.id) AS d
WHERE p.id = d.id;

-- The payments module: a captured payment per confirmed order, refunded by a later
-- cancel; its events; and the simulated gateway's ledger, which charged (and refunded) it.
INSERT INTO payments.payments (id, order_id, amount, status, gateway_reference, version,
    created_at, updated_at, refund_requested_at, check_after, checks)
SELECT o.payment_id, o.id, o.total,
       CASE WHEN x.at IS NULL THEN 'captured' ELSE 'refunded' END,
       'sim_ch_' || replace(o.payment_id::text, '-', ''),
       CASE WHEN x.at IS NULL THEN 1 ELSE 2 END,
       c.at, coalesce(x.at, c.at), x.at, coalesce(x.at, c.at) + interval '20 s', 0
FROM seed_orders o
JOIN seed_steps c ON c.i = o.i AND c.command = 'confirm'
LEFT JOIN seed_steps x ON x.i = o.i AND x.command = 'cancel'
ORDER BY o.i;

INSERT INTO payments.events (event_id, event_type, aggregate_id, aggregate_version, occurred_at,
    schema_version, payload, actor_kind, actor_id, correlation_id)
SELECT pg_temp.uuid7(st.at),
       CASE st.command WHEN 'confirm' THEN 'payment.captured' ELSE 'payment.refunded' END,
       o.payment_id, CASE st.command WHEN 'confirm' THEN 1 ELSE 2 END, st.at, 1,
       jsonb_build_object('amount', o.total::text, 'order_id', o.id, 'payment_id', o.payment_id),
       'user', s.staff, st.correlation
FROM seed_steps st JOIN seed_orders o USING (i) CROSS JOIN seed_settings s
WHERE o.payment_id IS NOT NULL AND st.command IN ('confirm', 'cancel')
ORDER BY st.at, st.i, st.k;

INSERT INTO gateway.ledger (key, amount, outcome, reference, reason, created_at, updated_at)
SELECT p.id, p.amount, CASE p.status WHEN 'captured' THEN 'charged' ELSE 'refunded' END,
       p.gateway_reference, NULL, p.created_at, p.updated_at
FROM payments.payments p JOIN seed_orders o ON o.payment_id = p.id
ORDER BY o.i;

-- The read model, as the projection leaves it.
INSERT INTO orders_read.orders (generation, id, user_id, user_name, user_email, item_count,
    total, status, cancel_reason, created_at, updated_at, version)
SELECT s.generation, o.id, o.user_id, o.user_name, o.user_email, o.item_count, o.total,
       o.status, CASE o.status WHEN 'cancelled' THEN s.cancel_reason END,
       o.at, o.at + (o.version - 1) * interval '100 us', o.version
FROM seed_orders o, seed_settings s ORDER BY o.i;

INSERT INTO orders_read.order_items (generation, order_id, line, product_id, product_name,
    quantity, price)
SELECT s.generation, o.id, l.line, p.id, p.name, l.quantity, p.price
FROM seed_plan_lines l JOIN seed_orders o USING (i) JOIN seed_products p ON p.idx = l.product_idx
CROSS JOIN seed_settings s
ORDER BY l.i, l.line;
