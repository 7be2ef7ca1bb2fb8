//! The orders module's contract: commands on the write model ([`OrderCommands`]), queries
//! on the denormalized read model ([`OrderQueries`]), and the events it publishes.
//!
//! Plain data, traits and the [`OrderError`] enum. Never depends on diesel, actix-web or
//! tokio-postgres, and never on another module's implementation.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{FieldError, IntoProblem, Money, OrderId, PageRequest, Problem, ProductId, UserId};
use payments_api::PaymentError;
use products_api::ProductError;
use serde::{Deserialize, Serialize};

/// Most lines in one order, and most units in one line.
pub const MAX_ITEMS: usize = 100;
pub const MAX_QUANTITY: i64 = 10_000;

/// Where an order stands: `pending -> confirmed -> shipped -> delivered`, and `cancelled`
/// from any of the first three.
// Its text (`as_str`, `FromStr`, serde) is written only here; implementation crates store
// it through their own diesel mapping of these two functions. (A `//` comment: doc
// comments of this type are its OpenAPI description.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Confirmed,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// `"Pending"`, for display.
    pub fn display(&self) -> &'static str {
        match self {
            OrderStatus::Pending => "Pending",
            OrderStatus::Confirmed => "Confirmed",
            OrderStatus::Shipped => "Shipped",
            OrderStatus::Delivered => "Delivered",
            OrderStatus::Cancelled => "Cancelled",
        }
    }
}

/// Text that names no [`OrderStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown order status {0:?}")]
pub struct UnknownOrderStatus(pub String);

impl std::str::FromStr for OrderStatus {
    type Err = UnknownOrderStatus;

    /// The inverse of [`OrderStatus::as_str`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        OrderStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| UnknownOrderStatus(text.to_owned()))
    }
}

/// One requested line of a new order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrderLine {
    pub product_id: ProductId,
    pub quantity: i64,
}

/// Input of [`OrderCommands::place`]; prices come from the catalog, never from here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    pub user_id: UserId,
    pub items: Vec<NewOrderLine>,
}

/// What every command answers: `202 {"order_id", "status", "version"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accepted {
    pub order_id: OrderId,
    /// The order's status after the command.
    pub status: OrderStatus,
    /// The order's version after the command (1 when placed); also the `ETag`.
    #[schema(minimum = 1, examples(1))]
    pub version: i64,
}

/// Which version a command expects the order to be at (`If-Match`); `None` takes the
/// current one, and a concurrent change still makes the command fail, never overwrite.
pub type ExpectedVersion = Option<i64>;

/// Whose orders a command on an existing order may touch: what the caller's rule
/// (`orders::rules`, at the edge) allows. Checked under the order's row lock, first, so a
/// customer learns nothing of an order that is not theirs: it is
/// [`OrderError::NotFound`], exactly as an unknown one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Staff, or the system: any order.
    Any,
    /// A customer: only the orders they placed, and only as a customer may (they cannot
    /// cancel a shipped order, and cannot confirm while inactive).
    Own(UserId),
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("order {0} not found")]
    NotFound(OrderId),
    #[error("invalid order input")]
    Invalid(Vec<FieldError>),
    #[error("user {0} does not exist")]
    UnknownUser(UserId),
    #[error("user {0} is inactive and cannot place orders")]
    UserInactive(UserId),
    /// The products module refused the order's lines (unknown products, insufficient
    /// stock); passed on as that module states it.
    #[error(transparent)]
    Product(ProductError),
    #[error("cannot {command} an order that is {from:?}")]
    InvalidTransition {
        from: OrderStatus,
        command: &'static str,
    },
    #[error("order {order_id} is at version {actual}, not {expected}")]
    VersionMismatch {
        order_id: OrderId,
        expected: i64,
        actual: i64,
    },
    /// The caller may see the order but not do this to it (a customer cancelling a
    /// shipped order).
    #[error("{0}")]
    Forbidden(String),
    #[error("order {0} was changed by a concurrent command; retry")]
    Conflict(OrderId),
    #[error("idempotency key {0:?} was already used with another request")]
    IdempotencyKeyReused(String),
    #[error("a request with idempotency key {0:?} is still running")]
    IdempotencyKeyInUse(String),
    /// The order's total, at the catalog's prices now, is more than one payment charges
    /// ([`payments_api::max_charge`]): a rule of the catalog's state, as stock is.
    #[error("the order's total {total} is over {most}, the most one payment charges")]
    TotalTooLarge { total: Money, most: Money },
    /// The customer already holds the most pending orders they may (`MAX_PENDING_ORDERS`).
    #[error("user {user_id} already holds {max} pending orders; confirm or cancel one first")]
    TooManyPendingOrders { user_id: UserId, max: u32 },
    /// A confirm is charging the order right now: another confirm, a cancel or an expiry
    /// must wait until it has ended.
    #[error("order {0} is being paid for by another confirm")]
    PaymentInProgress(OrderId),
    /// The payments module refused the charge (declined, gateway failure, unknown token);
    /// passed on as that module states it.
    #[error(transparent)]
    Payment(PaymentError),
    /// Not `transparent`: the cause stays in the `source()` chain, so a
    /// [`kernel::Unavailable`] under it is still found (and answered `503`) by whoever
    /// wraps this error again.
    #[error("unexpected failure in the orders module")]
    Unexpected(#[from] anyhow::Error),
}

/// Each answer stated once: the order's own here, the products' and payments' by their
/// `-api` crates ([`OrderError::Product`], [`OrderError::Payment`] delegate).
impl IntoProblem for OrderError {
    fn into_problem(self) -> Result<Problem, anyhow::Error> {
        Ok(match self {
            e @ OrderError::NotFound(_) => Problem::not_found("order_not_found", e),
            OrderError::Invalid(errors) => Problem::validation(errors),
            e @ OrderError::UnknownUser(_) => Problem::new(422, "unknown_user", e),
            e @ OrderError::UserInactive(_) => Problem::conflict("user_inactive", e),
            OrderError::Product(e) => return e.into_problem(),
            OrderError::Payment(e) => return e.into_problem(),
            e @ OrderError::PaymentInProgress(_) => Problem::conflict(
                "payment_pending",
                format!("{e}; nothing was done, try again once it has ended"),
            ),
            e @ OrderError::InvalidTransition { .. } => Problem::conflict("invalid_transition", e),
            e @ OrderError::VersionMismatch { .. } => Problem::new(412, "version_mismatch", e),
            e @ OrderError::Conflict(_) => Problem::conflict("concurrent_modification", e),
            OrderError::Forbidden(why) => Problem::forbidden(why),
            e @ OrderError::IdempotencyKeyReused(_) => {
                Problem::conflict("idempotency_key_reused", e)
            }
            e @ OrderError::IdempotencyKeyInUse(_) => {
                Problem::conflict("idempotency_key_in_use", e)
            }
            e @ OrderError::TotalTooLarge { .. } => Problem::conflict("total_too_large", e),
            e @ OrderError::TooManyPendingOrders { .. } => {
                Problem::conflict("too_many_pending_orders", e)
            }
            OrderError::Unexpected(e) => return Err(e),
        })
    }
}

/// The write side: each command loads the order, applies the domain rules, and saves it
/// with a version check.
#[async_trait]
pub trait OrderCommands: Send + Sync {
    /// Creates a pending order, reserving its stock all or nothing. With an idempotency
    /// key, a repeat of the same request answers the first answer and creates nothing.
    async fn place(
        &self,
        order: NewOrder,
        idempotency_key: Option<String>,
    ) -> Result<Accepted, OrderError>;
    /// Charges the order's total, then confirms it.
    async fn confirm(
        &self,
        id: OrderId,
        payment_token: String,
        expected: ExpectedVersion,
        scope: Scope,
    ) -> Result<Accepted, OrderError>;
    async fn ship(&self, id: OrderId, expected: ExpectedVersion) -> Result<Accepted, OrderError>;
    async fn deliver(&self, id: OrderId, expected: ExpectedVersion)
    -> Result<Accepted, OrderError>;
    /// Cancels; a pending order's stock is released, a paid order is refunded and its
    /// stock returned.
    async fn cancel(
        &self,
        id: OrderId,
        reason: String,
        expected: ExpectedVersion,
        scope: Scope,
    ) -> Result<Accepted, OrderError>;
}

/// One line of the read model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderItemView {
    pub product_id: ProductId,
    /// The product's latest name.
    pub product_name: String,
    #[schema(minimum = 1, maximum = 10_000)]
    pub quantity: i64,
    /// The unit price at the moment of ordering.
    pub price: Money,
    /// `price` x `quantity`, exact.
    pub subtotal: Money,
}

/// The denormalized order, as queries answer it (eventually consistent with the commands).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderView {
    pub id: OrderId,
    pub user_id: UserId,
    /// The user's latest name (null until the read model has seen the user).
    #[schema(required = true)]
    pub user_name: Option<String>,
    /// The user's latest email (null until the read model has seen the user).
    #[schema(required = true)]
    pub user_email: Option<String>,
    pub items: Vec<OrderItemView>,
    /// The number of lines.
    pub item_count: i64,
    /// The sum of the subtotals, exact.
    pub total: Money,
    pub status: OrderStatus,
    /// The capitalised status, e.g. `Pending`.
    #[schema(examples("Pending"))]
    pub status_display: String,
    /// Null unless cancelled; `expired` when the system cancelled an unconfirmed order.
    #[schema(required = true)]
    pub cancel_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The order's version this view reflects.
    #[schema(minimum = 1)]
    pub version: i64,
}

/// A page of orders, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    /// Orders matching the filters: exact, summed from per-user, per-status counts the read
    /// model keeps as it is written (not counted per request).
    pub total: u64,
    #[schema(minimum = 1)]
    pub page: u32,
    #[schema(minimum = 1, maximum = 100)]
    pub page_size: u32,
    pub total_pages: u64,
}

/// List filters.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderFilter {
    pub user_id: Option<UserId>,
    pub status: Option<OrderStatus>,
}

/// A read that may lag the write model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// The read model holds the asked version or later.
    Fresh(OrderView),
    /// The wait ran out; this is what the read model has.
    Stale(OrderView),
}

/// The read side: the denormalized read model fed by projections.
#[async_trait]
pub trait OrderQueries: Send + Sync {
    /// The order; with `min_version`, waits a bounded time (2 s) for the read model to
    /// reach that version, then answers what it has as [`Read::Stale`].
    async fn get(&self, id: OrderId, min_version: Option<i64>) -> Result<Read, OrderError>;
    async fn list(&self, filter: OrderFilter, page: PageRequest) -> Result<OrderPage, OrderError>;
}

pub mod rules;

pub mod events;

#[cfg(test)]
mod tests {
    use kernel::Payload;

    use super::*;

    #[test]
    fn order_created_version_1_reads_with_each_lines_subtotal() {
        let v1 = serde_json::json!({
            "user_id": "01936a2e-7c00-7000-8000-000000000001", "user_name": "A",
            "user_email": "a@example.com", "total": "42.50",
            "items": [
                {"product_id": "01936a2e-7c00-7000-8000-000000000010", "product_name": "Lamp",
                 "quantity": 3, "price": "12.50"},
                {"product_id": "01936a2e-7c00-7000-8000-000000000011", "product_name": "Cup",
                 "quantity": 1, "price": 5},
            ],
        });
        let read = events::OrderCreated::read(1, v1.clone()).unwrap();
        let subtotals: Vec<String> = read.items.iter().map(|l| l.subtotal.to_string()).collect();
        assert_eq!(subtotals, ["37.50", "5.00"]);
        // Version 2 must carry its subtotals: nothing fills them in.
        assert!(events::OrderCreated::read(2, v1).is_err());
        let mut overflowing = serde_json::json!({"items": [{"quantity": -1, "price": "1.00"}]});
        let error = events::OrderCreated::upcast(1, overflowing.take()).unwrap_err();
        assert!(error.to_string().contains("out of range"), "{error}");
    }

    #[test]
    fn every_error_states_its_status_and_code() {
        let (order_id, user_id) = (OrderId::generate(), UserId::generate());
        let cases = [
            (OrderError::NotFound(order_id), 404, "order_not_found"),
            (OrderError::UnknownUser(user_id), 422, "unknown_user"),
            (OrderError::UserInactive(user_id), 409, "user_inactive"),
            (
                OrderError::InvalidTransition {
                    from: OrderStatus::Delivered,
                    command: "cancel",
                },
                409,
                "invalid_transition",
            ),
            (
                OrderError::VersionMismatch {
                    order_id,
                    expected: 1,
                    actual: 2,
                },
                412,
                "version_mismatch",
            ),
            (
                OrderError::Conflict(order_id),
                409,
                "concurrent_modification",
            ),
            (
                OrderError::IdempotencyKeyReused("k".into()),
                409,
                "idempotency_key_reused",
            ),
            (
                OrderError::IdempotencyKeyInUse("k".into()),
                409,
                "idempotency_key_in_use",
            ),
            (
                OrderError::PaymentInProgress(order_id),
                409,
                "payment_pending",
            ),
        ];
        for (error, status, code) in cases {
            let p = error
                .into_problem()
                .expect("a domain error states its problem");
            assert_eq!((p.status, p.code.as_str()), (status, code), "{p}");
        }
    }

    /// A passed-on error answers exactly what its own module states, body and all.
    #[test]
    fn wrapped_errors_answer_as_their_module_states_them() {
        let product_id = ProductId::generate();
        let stock = || ProductError::InsufficientStock {
            product_id,
            requested: 3,
            available: 1,
        };
        assert_eq!(
            OrderError::Product(stock()).into_problem().unwrap(),
            stock().into_problem().unwrap()
        );
        let order_id = OrderId::generate();
        let payments = || {
            [
                PaymentError::Declined { order_id },
                PaymentError::GatewayUnavailable("timeout".into()),
                PaymentError::InvalidToken {
                    token: "x".into(),
                    reason: "unknown token".into(),
                },
            ]
        };
        for (wrapped, own) in payments().into_iter().zip(payments()) {
            assert_eq!(
                OrderError::Payment(wrapped).into_problem().unwrap(),
                own.into_problem().unwrap()
            );
        }
    }
}
