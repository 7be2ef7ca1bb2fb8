//! The integration events the orders module publishes (envelope `aggregate_id` = order id,
//! `aggregate_version` = the order's version after the change).

use kernel::{Contract, Log, Money, Payload, PaymentId, ProductId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::OrderStatus;

pub const ORDER_CREATED: &str = "order.created";
pub const ORDER_CONFIRMED: &str = "order.confirmed";
pub const ORDER_SHIPPED: &str = "order.shipped";
pub const ORDER_DELIVERED: &str = "order.delivered";
pub const ORDER_CANCELLED: &str = "order.cancelled";

/// The orders module's event log.
pub const LOG: Log = Log {
    module: "orders",
    events: &[
        Contract::of::<OrderCreated>(
            ORDER_CREATED,
            "An order was placed: its stock is reserved, and it waits for payment.",
        ),
        Contract::of::<OrderConfirmed>(ORDER_CONFIRMED, "An order was paid."),
        Contract::of::<StatusChanged>(ORDER_SHIPPED, "A paid order left the warehouse."),
        Contract::of::<StatusChanged>(ORDER_DELIVERED, "A shipped order arrived."),
        Contract::of::<OrderCancelled>(
            ORDER_CANCELLED,
            "An order was cancelled (by its customer, by staff, or by expiry); its stock \
             goes back, and its payment, if any, is refunded.",
        ),
    ],
};

/// A line of `order.created`: the product's name and unit price as placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderLine {
    pub product_id: ProductId,
    pub product_name: String,
    pub quantity: i64,
    pub price: Money,
    /// `price` x `quantity`, exact (since version 2).
    pub subtotal: Money,
}

impl OrderLine {
    /// A line whose subtotal is `price` x `quantity`; `None` if that overflows.
    pub fn new(
        product_id: ProductId,
        product_name: String,
        quantity: i64,
        price: Money,
    ) -> Option<OrderLine> {
        let subtotal = price.checked_mul(u32::try_from(quantity).ok()?)?;
        Some(OrderLine {
            product_id,
            product_name,
            quantity,
            price,
            subtotal,
        })
    }
}

/// `order.created`, version 2: the order as placed, with catalog names and prices, and
/// each line's subtotal (version 1 had none; its upcaster adds it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderCreated {
    pub user_id: UserId,
    pub user_name: String,
    pub user_email: String,
    pub items: Vec<OrderLine>,
    /// The sum of the subtotals.
    pub total: Money,
}

impl Payload for OrderCreated {
    const SCHEMA_VERSION: i32 = 2;

    fn upcast(version: i32, mut payload: Value) -> anyhow::Result<Value> {
        anyhow::ensure!(version == 1, "no upcaster from version {version}");
        let items = payload
            .get_mut("items")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| anyhow::anyhow!("order.created v1 without items"))?;
        for item in items {
            // As version 1 was read: `Money` takes its text or a number of cents.
            let quantity = item["quantity"].as_i64();
            let price = serde_json::from_value::<Money>(item["price"].clone());
            let (Some(quantity), Ok(price)) = (quantity, price) else {
                anyhow::bail!("order.created v1 line without a quantity or a price: {item}");
            };
            let subtotal = u32::try_from(quantity)
                .ok()
                .and_then(|q| price.checked_mul(q))
                .ok_or_else(|| anyhow::anyhow!("order.created v1 line out of range"))?;
            item["subtotal"] = Value::String(subtotal.to_string());
        }
        Ok(payload)
    }

    fn sample() -> Self {
        let line = |product: &str, name: &str, quantity, price| {
            let product = product.parse().expect("a sample id");
            let price = Money::parse(price).expect("a sample amount");
            OrderLine::new(product, String::from(name), quantity, price).expect("a sample line")
        };
        OrderCreated {
            user_id: "01936a2e-7c00-7000-8000-000000000001"
                .parse()
                .expect("a sample id"),
            user_name: "Ada Lovelace".into(),
            user_email: "ada@example.com".into(),
            items: vec![
                line("01936a2e-7c00-7000-8000-000000000010", "Teapot", 2, "19.99"),
                line("01936a2e-7c00-7000-8000-000000000011", "Cup", 1, "9.50"),
            ],
            total: Money::parse("49.48").expect("a sample amount"),
        }
    }
}

/// `order.confirmed`: paid by `payment_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderConfirmed {
    pub payment_id: PaymentId,
    pub amount: Money,
}

impl Payload for OrderConfirmed {
    fn sample() -> Self {
        OrderConfirmed {
            payment_id: "01936a2e-7c00-7000-8000-000000000003"
                .parse()
                .expect("a sample id"),
            amount: Money::parse("49.48").expect("a sample amount"),
        }
    }
}

/// `order.shipped` and `order.delivered` carry nothing but their envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
pub struct StatusChanged {}

impl Payload for StatusChanged {
    fn sample() -> Self {
        StatusChanged {}
    }
}

/// `order.cancelled`: why, and from which status (which tells whether it was paid).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderCancelled {
    pub reason: String,
    pub previous_status: OrderStatus,
}

impl Payload for OrderCancelled {
    fn sample() -> Self {
        OrderCancelled {
            reason: "changed my mind".into(),
            previous_status: OrderStatus::Confirmed,
        }
    }
}
