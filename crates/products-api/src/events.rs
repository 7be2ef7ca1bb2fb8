//! The integration events the products module publishes (envelope `aggregate_id` =
//! product id). Reservations publish none: stock held for orders is the orders module's
//! story to tell.

use kernel::{Contract, Log, Money, Payload};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const PRODUCT_CREATED: &str = "product.created";
pub const PRODUCT_UPDATED: &str = "product.updated";
pub const PRODUCT_RESTOCKED: &str = "product.restocked";

/// The products module's event log.
pub const LOG: Log = Log {
    module: "products",
    events: &[
        Contract::of::<ProductCreated>(PRODUCT_CREATED, "A product joined the catalog."),
        Contract::of::<ProductUpdated>(
            PRODUCT_UPDATED,
            "A product's name, description or price changed.",
        ),
        Contract::of::<ProductRestocked>(PRODUCT_RESTOCKED, "Stock was added to a product."),
    ],
};

/// `product.created`: the product as created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductCreated {
    pub name: String,
    pub description: String,
    pub price: Money,
    pub stock: i64,
}

impl Payload for ProductCreated {
    fn sample() -> Self {
        ProductCreated {
            name: "Teapot".into(),
            description: "Porcelain, 1 l".into(),
            price: money("19.99"),
            stock: 40,
        }
    }
}

/// `product.updated`: name, description and price after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductUpdated {
    pub name: String,
    pub description: String,
    pub price: Money,
}

impl Payload for ProductUpdated {
    fn sample() -> Self {
        ProductUpdated {
            name: "Teapot".into(),
            description: "Porcelain, 1.2 l".into(),
            price: money("24.50"),
        }
    }
}

/// `product.restocked`: `quantity` added; `stock` after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductRestocked {
    pub quantity: i64,
    pub stock: i64,
}

impl Payload for ProductRestocked {
    fn sample() -> Self {
        ProductRestocked {
            quantity: 10,
            stock: 50,
        }
    }
}

fn money(text: &str) -> Money {
    Money::parse(text).expect("a sample amount")
}
