//! The floor's database side: its own schema `floor` (copies of the tables a placement
//! writes, made at start), a plain pool of connections each with every statement prepared
//! once, and the statements themselves.

use std::error::Error;

use anyhow::{Context, Result};
use deadpool::managed;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Statement};
use uuid::Uuid;

/// The floor's schema: emporium's tables a placement writes, `LIKE` theirs (columns,
/// defaults, checks, indexes; the lines' foreign key added), filled with a copy of their
/// rows, so that a floor placement does the same work on tables of the same size. Dropped
/// and made again at every start.
const COPY_TABLES: &str = "
    DROP SCHEMA IF EXISTS floor CASCADE;
    CREATE SCHEMA floor;
    CREATE TABLE floor.users (LIKE users.users INCLUDING ALL);
    CREATE TABLE floor.products (LIKE products.products INCLUDING ALL);
    CREATE TABLE floor.orders (LIKE orders.orders INCLUDING ALL);
    CREATE TABLE floor.order_lines (LIKE orders.order_lines INCLUDING ALL);
    CREATE TABLE floor.events (LIKE orders.events INCLUDING ALL);
    INSERT INTO floor.users SELECT * FROM users.users;
    INSERT INTO floor.products SELECT * FROM products.products;
    INSERT INTO floor.orders SELECT * FROM orders.orders;
    INSERT INTO floor.order_lines SELECT * FROM orders.order_lines;
    INSERT INTO floor.events OVERRIDING SYSTEM VALUE SELECT * FROM orders.events;
    ALTER TABLE floor.order_lines ADD FOREIGN KEY (order_id) REFERENCES floor.orders (id);
";

/// Makes the floor's schema, then `VACUUM ANALYZE`s it as the bench does emporium's
/// after seeding (each its own statement: `VACUUM` runs outside a transaction).
pub(crate) async fn copy_tables(config: &tokio_postgres::Config) -> Result<()> {
    let client = connect(config).await.context("connecting to Postgres")?;
    client
        .batch_execute(COPY_TABLES)
        .await
        .context("copying emporium's tables into schema floor")?;
    for table in ["users", "products", "orders", "order_lines", "events"] {
        client
            .batch_execute(&format!("VACUUM ANALYZE floor.{table}"))
            .await
            .with_context(|| format!("VACUUM ANALYZE floor.{table}"))?;
    }
    Ok(())
}

/// A uuid bound and read in Postgres's binary format (tokio-postgres's own support is a
/// feature that would change the build of every crate of the workspace that uses it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Id(pub(crate) Uuid);

impl ToSql for Id {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::UUID
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Id {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Id, Box<dyn Error + Sync + Send>> {
        Ok(Id(Uuid::from_slice(raw)?))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::UUID
    }
}

/// The order of the read model's live generation as emporium's `OrderView`, from `o` (an
/// `orders_read.orders` row) and `u` (its user's latest names, left-joined): the latest
/// names seen in events, else the ones placed with; money as text with its two decimals.
macro_rules! order_view {
    () => {
        "json_build_object(
            'id', o.id,
            'user_id', o.user_id,
            'user_name', coalesce(u.name, o.user_name),
            'user_email', coalesce(u.email, o.user_email),
            'items', (
                SELECT coalesce(json_agg(json_build_object(
                    'product_id', i.product_id,
                    'product_name', coalesce(p.name, i.product_name),
                    'quantity', i.quantity,
                    'price', i.price::text,
                    'subtotal', (i.price * i.quantity)::text) ORDER BY i.line), '[]')
                FROM orders_read.order_items i
                LEFT JOIN orders_read.products p ON p.generation = i.generation AND p.id = i.product_id
                WHERE i.generation = o.generation AND i.order_id = o.id),
            'item_count', o.item_count,
            'total', o.total::text,
            'status', o.status,
            'status_display', initcap(o.status),
            'cancel_reason', o.cancel_reason,
            'created_at', o.created_at,
            'updated_at', o.updated_at,
            'version', o.version)"
    };
}

/// The live generation, as a scalar subquery (evaluated once per statement).
macro_rules! live {
    () => {
        "(SELECT id FROM orders_read.generations WHERE state = 'live')"
    };
}

/// `GET /queries/orders/{id}`: the version (the `ETag`) and the view.
const ORDER: &str = concat!(
    "SELECT o.version, ",
    order_view!(),
    "::text FROM orders_read.orders o
     LEFT JOIN orders_read.users u ON u.generation = o.generation AND u.id = o.user_id
     WHERE o.generation = ",
    live!(),
    " AND o.id = $1"
);

/// `GET /queries/orders?user_id=`: the user's orders counted, and one page of them, newest
/// first, with their items ($2 offset, $3 limit).
const USER_ORDERS: &str = concat!(
    "WITH page AS (
        SELECT * FROM orders_read.orders
        WHERE generation = ",
    live!(),
    " AND user_id = $1
        ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT $3)
     SELECT
        (SELECT count(*) FROM orders_read.orders WHERE generation = ",
    live!(),
    " AND user_id = $1),
        (SELECT coalesce(json_agg(",
    order_view!(),
    " ORDER BY o.created_at DESC, o.id DESC), '[]')
         FROM page o
         LEFT JOIN orders_read.users u ON u.generation = o.generation AND u.id = o.user_id)::text"
);

/// `GET /products/{id}` as emporium's `Product`.
const PRODUCT: &str = "SELECT json_build_object(
        'id', id, 'name', name, 'description', description, 'price', price::text,
        'stock', stock, 'reserved', reserved, 'created_at', created_at, 'updated_at', updated_at)::text
    FROM products.products WHERE id = $1";

/// The placement's statements, in the order it runs them.
const USER: &str = "SELECT name, email, active FROM floor.users WHERE id = $1";
/// Takes a line's stock if there is enough: its name and price as placed.
const TAKE_STOCK: &str = "UPDATE floor.products
    SET stock = stock - $2, reserved = reserved + $2, updated_at = now()
    WHERE id = $1 AND stock >= $2
    RETURNING name, price::text";
/// Why a line's stock could not be taken (only on that path): unknown, or short.
const STOCK: &str = "SELECT stock FROM floor.products WHERE id = $1";
/// The order, `pending` at version 1, its total summed from the lines' prices ($3) and
/// quantities ($4).
const INSERT_ORDER: &str =
    "INSERT INTO floor.orders (id, user_id, status, total, version, created_at, updated_at)
    SELECT $1::uuid, $2::uuid, 'pending', sum(price::numeric * quantity), 1, now(), now()
    FROM unnest($3::text[], $4::int8[]) AS line (price, quantity)
    RETURNING total::text";
const INSERT_LINES: &str =
    "INSERT INTO floor.order_lines (order_id, line, product_id, product_name, quantity, price)
    SELECT $1::uuid, n::int4 - 1, product_id, product_name, quantity, price::numeric
    FROM unnest($2::uuid[], $3::text[], $4::int8[], $5::text[])
        WITH ORDINALITY AS line (product_id, product_name, quantity, price, n)";
/// The outbox row, as emporium's `order.created` (the payload as text: tokio-postgres's
/// JSON support is a feature too).
const INSERT_EVENT: &str = "INSERT INTO floor.events
    (event_id, event_type, aggregate_id, aggregate_version, occurred_at, schema_version, payload)
    VALUES ($1, 'order.created', $2, 1, now(), 2, $3::text::jsonb)";
/// Delivered on commit, as emporium's outbox does, on a channel no emporium process
/// listens to.
const NOTIFY: &str = "SELECT pg_notify('bench_floor', 'floor')";

/// Every statement, prepared on one connection.
pub(crate) struct Statements {
    pub(crate) order: Statement,
    pub(crate) user_orders: Statement,
    pub(crate) product: Statement,
    pub(crate) user: Statement,
    pub(crate) take_stock: Statement,
    pub(crate) stock: Statement,
    pub(crate) insert_order: Statement,
    pub(crate) insert_lines: Statement,
    pub(crate) insert_event: Statement,
    pub(crate) notify: Statement,
}

/// A pooled connection and its prepared statements.
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) statements: Statements,
}

pub(crate) type Pool = managed::Pool<Manager>;

pub(crate) struct Manager {
    config: tokio_postgres::Config,
}

/// A pool of `size` connections; each prepares every statement when it opens.
pub(crate) fn pool(config: tokio_postgres::Config, size: usize) -> Result<Pool> {
    managed::Pool::builder(Manager { config })
        .max_size(size)
        .build()
        .context("building the pool")
}

/// A connection whose timestamps are UTC (as emporium's answers), driven by a task of its
/// own.
async fn connect(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let mut config = config.clone();
    config.options("-c TimeZone=UTC");
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("bench-floor: connection: {error}");
        }
    });
    Ok(client)
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<Conn, tokio_postgres::Error> {
        let client = connect(&self.config).await?;
        let statements = Statements {
            order: client.prepare(ORDER).await?,
            user_orders: client.prepare(USER_ORDERS).await?,
            product: client.prepare(PRODUCT).await?,
            user: client.prepare(USER).await?,
            take_stock: client.prepare(TAKE_STOCK).await?,
            stock: client.prepare(STOCK).await?,
            insert_order: client.prepare(INSERT_ORDER).await?,
            insert_lines: client.prepare(INSERT_LINES).await?,
            insert_event: client.prepare(INSERT_EVENT).await?,
            notify: client.prepare(NOTIFY).await?,
        };
        Ok(Conn { client, statements })
    }

    async fn recycle(
        &self,
        conn: &mut Conn,
        _: &managed::Metrics,
    ) -> managed::RecycleResult<tokio_postgres::Error> {
        if conn.client.is_closed() {
            return Err(managed::RecycleError::message("the connection is closed"));
        }
        Ok(())
    }
}
