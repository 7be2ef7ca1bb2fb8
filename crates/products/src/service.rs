//! The application service: parses input into domain types, runs one transaction per
//! command (a reservation runs in its caller's, handed over as a `kernel::db::Unit`), and
//! answers in `products-api` terms.
//!
//! Reservations never oversell because each line is one conditional
//! `UPDATE ... SET stock = stock - q WHERE stock >= q`: the row lock serializes concurrent
//! reservations of one product, and a line that matches no row fails the whole transaction.
//! Lines are applied in product-id order so two orders never deadlock.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::db::{self, DbContext, Pool, Unit};
use kernel::{Money, NewEvent, OrderId, PageRequest, ProductId, Validation};
use products_api::{
    NewProduct, Product, ProductApi, ProductChanges, ProductError, ProductPage, ProductSummary,
    ReservationLine, ReservationStatus, events,
};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::SCHEMA;
use crate::domain::{Description, Price, ProductName, StoredStatus, stock_quantity};
use crate::schema::{product_count, products, reservation_lines, reservations};

/// [`ProductApi`] over Postgres.
#[derive(Clone)]
pub struct ProductService {
    pool: Pool,
}

impl ProductService {
    pub fn new(pool: Pool) -> Self {
        ProductService { pool }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = products)]
struct ProductRow {
    id: Uuid,
    name: String,
    description: String,
    price: Decimal,
    stock: i64,
    reserved: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl ProductRow {
    fn created(&self) -> NewEvent {
        let payload = events::ProductCreated {
            name: self.name.clone(),
            description: self.description.clone(),
            price: Money::from_decimal(self.price).unwrap_or_default(),
            stock: self.stock,
        };
        NewEvent::new(events::PRODUCT_CREATED, self.id, self.version, &payload)
    }

    fn updated(&self) -> NewEvent {
        let payload = events::ProductUpdated {
            name: self.name.clone(),
            description: self.description.clone(),
            price: Money::from_decimal(self.price).unwrap_or_default(),
        };
        NewEvent::new(events::PRODUCT_UPDATED, self.id, self.version, &payload)
    }
}

impl TryFrom<ProductRow> for Product {
    type Error = ProductError;

    fn try_from(row: ProductRow) -> Result<Self, ProductError> {
        Ok(Product {
            id: row.id.into(),
            name: row.name,
            description: row.description,
            price: stored_money(row.price)?,
            stock: row.stock,
            reserved: row.reserved,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

fn stored_money(value: Decimal) -> Result<Money, ProductError> {
    Money::from_decimal(value)
        .map_err(|e| ProductError::Unexpected(anyhow::anyhow!("stored price is invalid: {e}")))
}

async fn load(conn: &mut AsyncPgConnection, id: ProductId) -> Result<Product, ProductError> {
    products::table
        .find(id.as_uuid())
        .select(ProductRow::as_select())
        .first(conn)
        .await
        .optional()
        .db_context("loading product")?
        .ok_or(ProductError::NotFound(id))?
        .try_into()
}

/// Loads and locks the product for the rest of the transaction (before any write, so its
/// events are ordered by the log's transaction ids).
async fn lock(conn: &mut AsyncPgConnection, id: ProductId) -> Result<ProductRow, ProductError> {
    products::table
        .find(id.as_uuid())
        .select(ProductRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
        .db_context("locking product")?
        .ok_or(ProductError::NotFound(id))
}

/// Locks the reservation of `order_id` for the rest of the transaction.
async fn lock_reservation(
    conn: &mut AsyncPgConnection,
    order_id: OrderId,
) -> Result<ReservationStatus, ProductError> {
    let status: StoredStatus = reservations::table
        .find(order_id.as_uuid())
        .select(reservations::status)
        .for_update()
        .first(conn)
        .await
        .optional()
        .db_context("loading reservation")?
        .ok_or(ProductError::ReservationNotFound(order_id))?;
    Ok(status.0)
}

/// The reservation's lines in product-id order (the lock order of products rows).
async fn lines(
    conn: &mut AsyncPgConnection,
    order_id: OrderId,
) -> Result<Vec<(Uuid, i64)>, ProductError> {
    Ok(reservation_lines::table
        .filter(reservation_lines::order_id.eq(order_id.as_uuid()))
        .select((reservation_lines::product_id, reservation_lines::quantity))
        .order(reservation_lines::product_id)
        .load(conn)
        .await
        .db_context("loading reservation lines")?)
}

async fn set_status(
    conn: &mut AsyncPgConnection,
    order_id: OrderId,
    status: ReservationStatus,
) -> Result<(), ProductError> {
    diesel::update(reservations::table.find(order_id.as_uuid()))
        .set((
            reservations::status.eq(StoredStatus(status)),
            reservations::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await
        .db_context("updating reservation")?;
    Ok(())
}

/// Moves a reservation from `from` to `to`, applying `change` to each line's product.
/// Already at `to`: a no-op. Anywhere else: `ReservationClosed`.
async fn transition<F>(
    pool: &Pool,
    order_id: OrderId,
    from: ReservationStatus,
    to: ReservationStatus,
    change: F,
) -> Result<(), ProductError>
where
    F: Fn(i64) -> (i64, i64) + Send + Sync,
{
    let mut conn = db::connect(pool).await?;
    db::transaction(&mut conn, async |conn| {
        let status = lock_reservation(conn, order_id).await?;
        if status == to {
            return Ok(());
        }
        if status != from {
            return Err(ProductError::ReservationClosed { order_id, status });
        }
        let now = Utc::now();
        for (product_id, quantity) in lines(conn, order_id).await? {
            let (stock_delta, reserved_delta) = change(quantity);
            diesel::update(products::table.find(product_id))
                .set((
                    products::stock.eq(products::stock + stock_delta),
                    products::reserved.eq(products::reserved + reserved_delta),
                    products::updated_at.eq(now),
                ))
                .execute(conn)
                .await
                .db_context("moving reserved stock")?;
        }
        set_status(conn, order_id, to).await
    })
    .await
}

/// Raw: a whole reservation in one statement. Records the reservation of order `$1`
/// (status `$3`) unless it has one already; then locks every line's product in id order
/// (so concurrent reservations of the same products wait for each other instead of
/// deadlocking), takes each line's quantity (`$4` products, `$5` quantities) from `stock`
/// to `reserved` where the stock suffices, and records the lines taken. `new` is whether
/// the reservation is new; `taken` the products whose line was taken. A line not taken
/// leaves the others taken: the caller's transaction is rolled back (see
/// `ProductApi::reserve`). An `UPDATE` re-reads a row another transaction changed meanwhile
/// (read committed), so the stock is checked on its newest version.
const RESERVE: &str = "WITH reservation AS ( \
       INSERT INTO products.reservations (order_id, status, created_at, updated_at) \
       VALUES ($1, $3, $2, $2) ON CONFLICT DO NOTHING RETURNING order_id), \
     lines AS (SELECT * FROM unnest($4::uuid[], $5::bigint[]) AS l(product_id, quantity)), \
     locked AS ( \
       SELECT p.id FROM products.products p \
       WHERE p.id IN (SELECT product_id FROM lines) AND EXISTS (SELECT 1 FROM reservation) \
       ORDER BY p.id FOR UPDATE), \
     taken AS ( \
       UPDATE products.products p \
       SET stock = p.stock - l.quantity, reserved = p.reserved + l.quantity, updated_at = $2 \
       FROM lines l JOIN locked k ON k.id = l.product_id \
       WHERE p.id = l.product_id AND p.stock >= l.quantity RETURNING p.id, l.quantity), \
     recorded AS ( \
       INSERT INTO products.reservation_lines (order_id, product_id, quantity) \
       SELECT $1, id, quantity FROM taken RETURNING product_id) \
     SELECT EXISTS (SELECT 1 FROM reservation) AS new, \
       coalesce((SELECT array_agg(product_id) FROM recorded), '{}') AS taken";

/// A row of [`RESERVE`].
#[derive(QueryableByName)]
struct Reserved {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    new: bool,
    #[diesel(sql_type = diesel::sql_types::Array<SqlUuid>)]
    taken: Vec<Uuid>,
}

#[async_trait]
impl ProductApi for ProductService {
    #[tracing::instrument(name = "products.create", skip_all)]
    async fn create(&self, input: NewProduct) -> Result<Product, ProductError> {
        let mut v = Validation::default();
        let name = v.check("name", ProductName::parse(&input.name));
        let description = v.check("description", Description::parse(&input.description));
        let price = v.check("price", Price::parse(input.price));
        let stock = v.check("stock", stock_quantity(input.stock, 0));
        v.finish().map_err(ProductError::Invalid)?;
        let (Some(name), Some(description), Some(price), Some(stock)) =
            (name, description, price, stock)
        else {
            unreachable!("validation passed");
        };
        let now = Utc::now();
        let row = ProductRow {
            id: ProductId::generate().as_uuid(),
            name: name.into_inner(),
            description: description.into_inner(),
            price: price.amount(),
            stock,
            reserved: 0,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let mut conn = db::connect(&self.pool).await?;
        let row = db::transaction(&mut conn, async |conn| {
            let row = diesel::insert_into(products::table)
                .values(&row)
                .returning(ProductRow::as_returning())
                .get_result(conn)
                .await
                .db_context("inserting product")?;
            eventlog::append(conn, SCHEMA.name, &[row.created()]).await?;
            Ok::<_, ProductError>(row)
        })
        .await?;
        tracing::info!(product_id = %row.id, "product created");
        row.try_into()
    }

    #[tracing::instrument(name = "products.get", skip_all)]
    async fn get(&self, id: ProductId) -> Result<Product, ProductError> {
        let mut conn = db::connect(&self.pool).await?;
        load(&mut conn, id).await
    }

    #[tracing::instrument(name = "products.list", skip_all)]
    async fn list(&self, page: PageRequest) -> Result<ProductPage, ProductError> {
        let mut conn = db::connect(&self.pool).await?;
        let rows: Vec<ProductRow> = products::table
            .select(ProductRow::as_select())
            .order(products::id.desc())
            .offset(page.offset())
            .limit(page.limit())
            .load(&mut conn)
            .await
            .db_context("listing products")?;
        // Kept by triggers in the same transaction as every insert: one row, not a count.
        let total: i64 = product_count::table
            .select(product_count::n)
            .get_result(&mut conn)
            .await
            .db_context("reading the catalog's size")?;
        let total = u64::try_from(total).unwrap_or_default();
        Ok(ProductPage {
            products: rows
                .into_iter()
                .map(Product::try_from)
                .collect::<Result<_, _>>()?,
            total,
            page: page.page(),
            page_size: page.page_size(),
            total_pages: page.total_pages(total),
        })
    }

    #[tracing::instrument(name = "products.update", skip_all)]
    async fn update(
        &self,
        id: ProductId,
        changes: ProductChanges,
    ) -> Result<Product, ProductError> {
        let mut v = Validation::default();
        let name = changes
            .name
            .as_deref()
            .and_then(|n| v.check("name", ProductName::parse(n)));
        let description = changes
            .description
            .as_deref()
            .and_then(|d| v.check("description", Description::parse(d)));
        let price = changes
            .price
            .and_then(|p| v.check("price", Price::parse(p)));
        v.finish().map_err(ProductError::Invalid)?;

        let mut conn = db::connect(&self.pool).await?;
        db::transaction(&mut conn, async |conn| {
            let current = lock(conn, id).await?;
            let name = name
                .map(ProductName::into_inner)
                .unwrap_or(current.name.clone());
            let description = description
                .map(Description::into_inner)
                .unwrap_or(current.description.clone());
            let price = price.map(|p| p.amount()).unwrap_or(current.price);
            if (&name, &description, price) == (&current.name, &current.description, current.price)
            {
                return current.try_into();
            }
            let row = diesel::update(products::table.find(id.as_uuid()))
                .set((
                    products::name.eq(name),
                    products::description.eq(description),
                    products::price.eq(price),
                    products::updated_at.eq(Utc::now()),
                    products::version.eq(current.version + 1),
                ))
                .returning(ProductRow::as_returning())
                .get_result(conn)
                .await
                .db_context("updating product")?;
            eventlog::append(conn, SCHEMA.name, &[row.updated()]).await?;
            row.try_into()
        })
        .await
    }

    #[tracing::instrument(name = "products.restock", skip_all)]
    async fn restock(&self, id: ProductId, quantity: i64) -> Result<Product, ProductError> {
        let quantity = stock_quantity(quantity, 1).map_err(|message| {
            ProductError::Invalid(vec![kernel::FieldError::new("quantity", message)])
        })?;
        let mut conn = db::connect(&self.pool).await?;
        db::transaction(&mut conn, async |conn| {
            let current = lock(conn, id).await?;
            if current.stock > products_api::MAX_STOCK - quantity {
                return Err(ProductError::StockLimit { product_id: id });
            }
            let row = diesel::update(products::table.find(id.as_uuid()))
                .set((
                    products::stock.eq(products::stock + quantity),
                    products::updated_at.eq(Utc::now()),
                    products::version.eq(current.version + 1),
                ))
                .returning(ProductRow::as_returning())
                .get_result(conn)
                .await
                .db_context("restocking product")?;
            let payload = events::ProductRestocked {
                quantity,
                stock: row.stock,
            };
            let event = NewEvent::new(events::PRODUCT_RESTOCKED, row.id, row.version, &payload);
            eventlog::append(conn, SCHEMA.name, &[event]).await?;
            row.try_into()
        })
        .await
    }

    #[tracing::instrument(name = "products.lookup", skip_all)]
    async fn lookup(&self, ids: &[ProductId]) -> Result<Vec<ProductSummary>, ProductError> {
        let uuids: Vec<Uuid> = ids.iter().map(ProductId::as_uuid).collect();
        let mut conn = db::connect(&self.pool).await?;
        let rows: Vec<(Uuid, String, Decimal)> = products::table
            .filter(products::id.eq_any(&uuids))
            .select((products::id, products::name, products::price))
            .load(&mut conn)
            .await
            .db_context("looking up products")?;
        let mut found = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match rows.iter().find(|(row_id, _, _)| *row_id == id.as_uuid()) {
                Some((_, name, price)) => found.push(ProductSummary {
                    id: *id,
                    name: name.clone(),
                    price: stored_money(*price)?,
                }),
                None => missing.push(*id),
            }
        }
        if missing.is_empty() {
            Ok(found)
        } else {
            Err(ProductError::UnknownProducts(missing))
        }
    }

    #[tracing::instrument(name = "products.reserve", skip_all)]
    async fn reserve(
        &self,
        unit: &mut Unit<'_>,
        order_id: OrderId,
        lines: &[ReservationLine],
    ) -> Result<(), ProductError> {
        let mut v = Validation::default();
        if lines.is_empty() {
            v.push("lines", "must not be empty");
        }
        for (i, line) in lines.iter().enumerate() {
            if line.quantity == 0 || i64::from(line.quantity) > products_api::MAX_STOCK {
                v.push(
                    &format!("lines[{i}].quantity"),
                    format!("must be 1 to {}", products_api::MAX_STOCK),
                );
            }
            if lines[..i]
                .iter()
                .any(|other| other.product_id == line.product_id)
            {
                v.push(
                    &format!("lines[{i}].product_id"),
                    format!("product {} appears twice", line.product_id),
                );
            }
        }
        v.finish().map_err(ProductError::Invalid)?;
        let conn = unit.acting_as(&SCHEMA).await?;
        let (ids, quantities): (Vec<Uuid>, Vec<i64>) = lines
            .iter()
            .map(|line| (line.product_id.as_uuid(), i64::from(line.quantity)))
            .unzip();
        // The primary key makes a concurrent repeat wait for us, then see our row.
        let reserved: Reserved = db::prepared(
            diesel::sql_query(RESERVE)
                .bind::<SqlUuid, _>(order_id.as_uuid())
                .bind::<Timestamptz, _>(Utc::now())
                .bind::<diesel::sql_types::Text, _>(StoredStatus(ReservationStatus::Reserved))
                .bind::<diesel::sql_types::Array<SqlUuid>, _>(&ids)
                .bind::<diesel::sql_types::Array<BigInt>, _>(&quantities),
        )
        .get_result(conn)
        .await
        .db_context("reserving stock")?;
        if !reserved.new {
            return Ok(());
        }
        // The first line (in product order) not taken says why.
        let mut sorted = lines.to_vec();
        sorted.sort_by_key(|line| line.product_id);
        let Some(line) = sorted
            .iter()
            .find(|line| !reserved.taken.contains(&line.product_id.as_uuid()))
        else {
            return Ok(());
        };
        let available: Option<i64> = products::table
            .find(line.product_id.as_uuid())
            .select(products::stock)
            .first(conn)
            .await
            .optional()
            .db_context("reading stock")?;
        Err(match available {
            None => ProductError::UnknownProducts(vec![line.product_id]),
            Some(available) => ProductError::InsufficientStock {
                product_id: line.product_id,
                requested: line.quantity,
                available,
            },
        })
    }

    #[tracing::instrument(name = "products.commit", skip_all)]
    async fn commit(&self, order_id: OrderId) -> Result<(), ProductError> {
        transition(
            &self.pool,
            order_id,
            ReservationStatus::Reserved,
            ReservationStatus::Committed,
            |q| (0, -q),
        )
        .await
    }

    #[tracing::instrument(name = "products.release", skip_all)]
    async fn release(&self, order_id: OrderId) -> Result<(), ProductError> {
        // Releasing an order that holds no reservation leaves a `released` tombstone, so a
        // reservation for it that arrives later (a slow request) is a no-op.
        let mut conn = db::connect(&self.pool).await?;
        let now = Utc::now();
        diesel::insert_into(reservations::table)
            .values((
                reservations::order_id.eq(order_id.as_uuid()),
                reservations::status.eq(StoredStatus(ReservationStatus::Released)),
                reservations::created_at.eq(now),
                reservations::updated_at.eq(now),
            ))
            .on_conflict_do_nothing()
            .execute(&mut conn)
            .await
            .db_context("fencing reservation")?;
        drop(conn);
        transition(
            &self.pool,
            order_id,
            ReservationStatus::Reserved,
            ReservationStatus::Released,
            |q| (q, -q),
        )
        .await
    }

    #[tracing::instrument(name = "products.return_stock", skip_all)]
    async fn return_stock(&self, order_id: OrderId) -> Result<(), ProductError> {
        transition(
            &self.pool,
            order_id,
            ReservationStatus::Committed,
            ReservationStatus::Returned,
            |q| (q, 0),
        )
        .await
    }

    #[tracing::instrument(name = "products.reservation", skip_all)]
    async fn reservation(&self, order_id: OrderId) -> Result<ReservationStatus, ProductError> {
        let mut conn = db::connect(&self.pool).await?;
        let status: StoredStatus = reservations::table
            .find(order_id.as_uuid())
            .select(reservations::status)
            .first(&mut conn)
            .await
            .optional()
            .db_context("loading reservation")?
            .ok_or(ProductError::ReservationNotFound(order_id))?;
        Ok(status.0)
    }
}
