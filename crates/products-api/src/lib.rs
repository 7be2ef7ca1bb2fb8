//! The products module's contract: the catalog, stock, and the reservation API the orders
//! module uses to hold stock for an order.
//!
//! Plain data, the [`ProductApi`] trait and the [`ProductError`] enum. Never depends on
//! diesel, actix-web or tokio-postgres, and never on another module.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::Unit;
use kernel::{FieldError, IntoProblem, Money, OrderId, PageRequest, Problem, ProductId};
use serde::{Deserialize, Serialize};

/// Largest `stock` a product may hold, and largest single restock.
pub const MAX_STOCK: i64 = 1_000_000_000;

/// A catalog product. `stock` is what can still be ordered; `reserved` is what pending
/// orders hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Product {
    pub id: ProductId,
    #[schema(examples("Mug"))]
    pub name: String,
    #[schema(examples("Stoneware, 350 ml"))]
    pub description: String,
    /// The current price; a change applies to new orders only.
    pub price: Money,
    /// What can still be ordered.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub stock: i64,
    /// What pending orders hold.
    #[schema(minimum = 0)]
    pub reserved: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One page of the catalog, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductPage {
    pub products: Vec<Product>,
    /// Products in the whole catalog: exact, read from a count the database keeps on every
    /// insert (not counted per request).
    pub total: u64,
    #[schema(minimum = 1)]
    pub page: u32,
    #[schema(minimum = 1, maximum = 100)]
    pub page_size: u32,
    pub total_pages: u64,
}

/// Input of [`ProductApi::create`]; validated by the module.
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub name: String,
    pub description: String,
    pub price: Money,
    pub stock: i64,
}

/// Input of [`ProductApi::update`]: `None` leaves a field as it is. Stock changes only
/// through restock and reservations.
#[derive(Debug, Clone, Default)]
pub struct ProductChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<Money>,
}

/// What an order needs to know of a product at the moment of ordering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductSummary {
    pub id: ProductId,
    pub name: String,
    pub price: Money,
}

/// One line of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationLine {
    pub product_id: ProductId,
    pub quantity: u32,
}

/// Where a reservation stands. `Reserved` holds stock for a pending order; `Committed`
/// means the order was paid and the stock is gone; `Released` gave a pending order's stock
/// back; `Returned` gave a paid order's stock back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    Reserved,
    Committed,
    Released,
    Returned,
}

impl ReservationStatus {
    pub const ALL: [ReservationStatus; 4] = [
        ReservationStatus::Reserved,
        ReservationStatus::Committed,
        ReservationStatus::Released,
        ReservationStatus::Returned,
    ];

    /// Its one spelling (the products module stores it as this text).
    pub fn as_str(&self) -> &'static str {
        match self {
            ReservationStatus::Reserved => "reserved",
            ReservationStatus::Committed => "committed",
            ReservationStatus::Released => "released",
            ReservationStatus::Returned => "returned",
        }
    }
}

/// Text that names no [`ReservationStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown reservation status {0:?}")]
pub struct UnknownReservationStatus(pub String);

impl std::str::FromStr for ReservationStatus {
    type Err = UnknownReservationStatus;

    /// The inverse of [`ReservationStatus::as_str`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ReservationStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| UnknownReservationStatus(text.to_owned()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProductError {
    #[error("product {0} not found")]
    NotFound(ProductId),
    #[error("unknown products: {0:?}")]
    UnknownProducts(Vec<ProductId>),
    #[error(
        "insufficient stock for product {product_id}: requested {requested}, available {available}"
    )]
    InsufficientStock {
        product_id: ProductId,
        requested: u32,
        available: i64,
    },
    #[error("restocking product {product_id} would exceed the stock limit of {MAX_STOCK}")]
    StockLimit { product_id: ProductId },
    #[error("no reservation for order {0}")]
    ReservationNotFound(OrderId),
    #[error("reservation of order {order_id} is {status:?}")]
    ReservationClosed {
        order_id: OrderId,
        status: ReservationStatus,
    },
    #[error("invalid product input")]
    Invalid(Vec<FieldError>),
    /// Not `transparent`: the cause stays in the `source()` chain, so a
    /// [`kernel::Unavailable`] under it is still found (and answered `503`) by whoever
    /// wraps this error again.
    #[error("unexpected failure in the products module")]
    Unexpected(#[from] anyhow::Error),
}

impl IntoProblem for ProductError {
    fn into_problem(self) -> Result<Problem, anyhow::Error> {
        Ok(match self {
            ProductError::NotFound(id) => {
                Problem::not_found("product_not_found", format!("product {id} does not exist"))
            }
            ProductError::UnknownProducts(ids) => {
                let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                Problem::new(
                    422,
                    "unknown_product",
                    format!("unknown products: {}", ids.join(", ")),
                )
            }
            e @ ProductError::InsufficientStock { .. } => {
                Problem::conflict("insufficient_stock", e)
            }
            e @ ProductError::StockLimit { .. } => Problem::conflict("stock_limit", e),
            e @ ProductError::ReservationNotFound(_) => {
                Problem::not_found("reservation_not_found", e)
            }
            e @ ProductError::ReservationClosed { .. } => {
                Problem::conflict("reservation_closed", e)
            }
            ProductError::Invalid(errors) => Problem::validation(errors),
            ProductError::Unexpected(cause) => return Err(cause),
        })
    }
}

#[async_trait]
pub trait ProductApi: Send + Sync {
    async fn create(&self, input: NewProduct) -> Result<Product, ProductError>;
    async fn get(&self, id: ProductId) -> Result<Product, ProductError>;
    async fn list(&self, page: PageRequest) -> Result<ProductPage, ProductError>;
    async fn update(&self, id: ProductId, changes: ProductChanges)
    -> Result<Product, ProductError>;
    /// Adds `quantity` (1..=[`MAX_STOCK`]) to the product's stock.
    async fn restock(&self, id: ProductId, quantity: i64) -> Result<Product, ProductError>;

    /// Names and current prices of `ids`, in the order asked; any unknown id is
    /// [`ProductError::UnknownProducts`].
    async fn lookup(&self, ids: &[ProductId]) -> Result<Vec<ProductSummary>, ProductError>;

    /// Moves every line's quantity from `stock` to `reserved` for `order_id`, as part of
    /// the caller's transaction `unit` (see [`kernel::Unit`]): it commits or rolls back
    /// with the caller's own writes. A line that lacks stock is
    /// [`ProductError::InsufficientStock`]; the caller then rolls its transaction back,
    /// and nothing stays reserved. Concurrent reservations never oversell (each product's
    /// row stays locked until the caller's transaction ends). A reservation for an
    /// `order_id` that already has one is a no-op. Runs only statements.
    async fn reserve(
        &self,
        unit: &mut Unit<'_>,
        order_id: OrderId,
        lines: &[ReservationLine],
    ) -> Result<(), ProductError>;
    /// The order was paid: its reserved quantity leaves `reserved` for good. Idempotent.
    async fn commit(&self, order_id: OrderId) -> Result<(), ProductError>;
    /// The pending order was cancelled: its reserved quantity goes back to `stock`.
    /// Idempotent. Releasing an order that has no reservation fences it: a later
    /// `reserve` for that order is a no-op, so a slow reservation cannot outlive its
    /// cancellation.
    async fn release(&self, order_id: OrderId) -> Result<(), ProductError>;
    /// The paid order was cancelled: its committed quantity goes back to `stock`.
    /// Idempotent.
    async fn return_stock(&self, order_id: OrderId) -> Result<(), ProductError>;
    /// Where the reservation of `order_id` stands.
    async fn reservation(&self, order_id: OrderId) -> Result<ReservationStatus, ProductError>;
}

#[cfg(feature = "testing")]
pub mod testing {
    //! An in-memory [`ProductApi`] for other modules' suites, so they run without the
    //! products module. Reservations keep the contract: all or nothing, no overselling,
    //! idempotent transitions.

    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    pub struct InMemoryProducts {
        state: Mutex<State>,
    }

    #[derive(Default)]
    struct State {
        products: HashMap<ProductId, Product>,
        reservations: HashMap<OrderId, (ReservationStatus, Vec<ReservationLine>)>,
    }

    impl InMemoryProducts {
        /// Adds a product directly and returns it.
        pub fn add(&self, name: &str, price: &str, stock: i64) -> Product {
            let now = Utc::now();
            let product = Product {
                id: ProductId::generate(),
                name: name.to_owned(),
                description: String::new(),
                price: Money::parse(price).expect("valid price"),
                stock,
                reserved: 0,
                created_at: now,
                updated_at: now,
            };
            self.lock().products.insert(product.id, product.clone());
            product
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }

        fn transition(
            &self,
            order_id: OrderId,
            from: ReservationStatus,
            to: ReservationStatus,
            change: fn(i64) -> (i64, i64),
        ) -> Result<(), ProductError> {
            let mut state = self.lock();
            let (status, lines) = state
                .reservations
                .get(&order_id)
                .cloned()
                .ok_or(ProductError::ReservationNotFound(order_id))?;
            if status == to {
                return Ok(());
            }
            if status != from {
                return Err(ProductError::ReservationClosed { order_id, status });
            }
            for line in &lines {
                let (stock, reserved) = change(i64::from(line.quantity));
                let product = state
                    .products
                    .get_mut(&line.product_id)
                    .expect("reserved product exists");
                product.stock += stock;
                product.reserved += reserved;
            }
            state.reservations.insert(order_id, (to, lines));
            Ok(())
        }
    }

    #[async_trait]
    impl ProductApi for InMemoryProducts {
        async fn create(&self, input: NewProduct) -> Result<Product, ProductError> {
            let product = self.add(&input.name, &input.price.to_string(), input.stock);
            Ok(Product {
                description: input.description,
                ..product
            })
        }

        async fn get(&self, id: ProductId) -> Result<Product, ProductError> {
            self.lock()
                .products
                .get(&id)
                .cloned()
                .ok_or(ProductError::NotFound(id))
        }

        async fn list(&self, page: PageRequest) -> Result<ProductPage, ProductError> {
            let mut products: Vec<Product> = self.lock().products.values().cloned().collect();
            products.sort_by_key(|p| std::cmp::Reverse(p.id));
            let total = products.len() as u64;
            let products = products
                .into_iter()
                .skip(usize::try_from(page.offset()).unwrap_or(usize::MAX))
                .take(page.page_size() as usize)
                .collect();
            Ok(ProductPage {
                products,
                total,
                page: page.page(),
                page_size: page.page_size(),
                total_pages: page.total_pages(total),
            })
        }

        async fn update(
            &self,
            id: ProductId,
            changes: ProductChanges,
        ) -> Result<Product, ProductError> {
            let mut state = self.lock();
            let product = state
                .products
                .get_mut(&id)
                .ok_or(ProductError::NotFound(id))?;
            if let Some(name) = changes.name {
                product.name = name;
            }
            if let Some(description) = changes.description {
                product.description = description;
            }
            if let Some(price) = changes.price {
                product.price = price;
            }
            Ok(product.clone())
        }

        async fn restock(&self, id: ProductId, quantity: i64) -> Result<Product, ProductError> {
            let mut state = self.lock();
            let product = state
                .products
                .get_mut(&id)
                .ok_or(ProductError::NotFound(id))?;
            product.stock += quantity;
            Ok(product.clone())
        }

        async fn lookup(&self, ids: &[ProductId]) -> Result<Vec<ProductSummary>, ProductError> {
            let state = self.lock();
            let missing: Vec<ProductId> = ids
                .iter()
                .filter(|id| !state.products.contains_key(id))
                .copied()
                .collect();
            if !missing.is_empty() {
                return Err(ProductError::UnknownProducts(missing));
            }
            Ok(ids
                .iter()
                .map(|id| {
                    let p = &state.products[id];
                    ProductSummary {
                        id: p.id,
                        name: p.name.clone(),
                        price: p.price,
                    }
                })
                .collect())
        }

        /// Takes no part in `unit`'s transaction: the fake holds the stock at once, and
        /// keeps it if the caller's transaction later rolls back.
        async fn reserve(
            &self,
            _unit: &mut Unit<'_>,
            order_id: OrderId,
            lines: &[ReservationLine],
        ) -> Result<(), ProductError> {
            let mut state = self.lock();
            if state.reservations.contains_key(&order_id) {
                return Ok(());
            }
            for line in lines {
                let product = state
                    .products
                    .get(&line.product_id)
                    .ok_or_else(|| ProductError::UnknownProducts(vec![line.product_id]))?;
                if product.stock < i64::from(line.quantity) {
                    return Err(ProductError::InsufficientStock {
                        product_id: line.product_id,
                        requested: line.quantity,
                        available: product.stock,
                    });
                }
            }
            for line in lines {
                let product = state
                    .products
                    .get_mut(&line.product_id)
                    .expect("checked above");
                product.stock -= i64::from(line.quantity);
                product.reserved += i64::from(line.quantity);
            }
            state
                .reservations
                .insert(order_id, (ReservationStatus::Reserved, lines.to_vec()));
            Ok(())
        }

        async fn commit(&self, order_id: OrderId) -> Result<(), ProductError> {
            self.transition(
                order_id,
                ReservationStatus::Reserved,
                ReservationStatus::Committed,
                |q| (0, -q),
            )
        }

        async fn release(&self, order_id: OrderId) -> Result<(), ProductError> {
            self.lock()
                .reservations
                .entry(order_id)
                .or_insert((ReservationStatus::Released, Vec::new()));
            self.transition(
                order_id,
                ReservationStatus::Reserved,
                ReservationStatus::Released,
                |q| (q, -q),
            )
        }

        async fn return_stock(&self, order_id: OrderId) -> Result<(), ProductError> {
            self.transition(
                order_id,
                ReservationStatus::Committed,
                ReservationStatus::Returned,
                |q| (q, 0),
            )
        }

        async fn reservation(&self, order_id: OrderId) -> Result<ReservationStatus, ProductError> {
            self.lock()
                .reservations
                .get(&order_id)
                .map(|(s, _)| *s)
                .ok_or(ProductError::ReservationNotFound(order_id))
        }
    }
}

pub mod events;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_statuses_round_trip_their_one_spelling() {
        for status in ReservationStatus::ALL {
            assert_eq!(status.as_str().parse::<ReservationStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::from(status.as_str())
            );
        }
        assert!("reserve".parse::<ReservationStatus>().is_err());
    }

    #[test]
    fn every_error_states_its_status_and_code() {
        let (product_id, order_id) = (ProductId::generate(), OrderId::generate());
        let cases = [
            (ProductError::NotFound(product_id), 404, "product_not_found"),
            (
                ProductError::UnknownProducts(vec![product_id]),
                422,
                "unknown_product",
            ),
            (
                ProductError::InsufficientStock {
                    product_id,
                    requested: 3,
                    available: 1,
                },
                409,
                "insufficient_stock",
            ),
            (ProductError::StockLimit { product_id }, 409, "stock_limit"),
            (
                ProductError::ReservationNotFound(order_id),
                404,
                "reservation_not_found",
            ),
            (
                ProductError::ReservationClosed {
                    order_id,
                    status: ReservationStatus::Released,
                },
                409,
                "reservation_closed",
            ),
            (
                ProductError::Invalid(vec![FieldError::new("price", "must be > 0")]),
                422,
                "validation_failed",
            ),
        ];
        for (error, status, code) in cases {
            let p = error
                .into_problem()
                .expect("a domain error states its problem");
            assert_eq!((p.status, p.code.as_str()), (status, code), "{p}");
            assert!(
                p.detail.contains(&product_id.to_string())
                    || p.detail.contains(&order_id.to_string())
                    || code == "validation_failed",
                "{p}"
            );
        }
        assert!(
            ProductError::Unexpected(anyhow::anyhow!("boom"))
                .into_problem()
                .is_err()
        );
    }
}
