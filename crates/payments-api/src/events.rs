//! The integration events the payments module publishes. The envelope's `aggregate_id` is
//! the payment id; `aggregate_version` is 1 for `payment.captured`, `payment.declined` and
//! `payment.failed` (a `pending` payment is version 0 and publishes nothing), 2 for
//! `payment.refunded`.

use kernel::{Contract, Log, Money, OrderId, Payload, PaymentId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const PAYMENT_CAPTURED: &str = "payment.captured";
pub const PAYMENT_DECLINED: &str = "payment.declined";
pub const PAYMENT_REFUNDED: &str = "payment.refunded";
pub const PAYMENT_FAILED: &str = "payment.failed";

/// The payments module's event log.
pub const LOG: Log = Log {
    module: "payments",
    events: &[
        Contract::of::<PaymentCaptured>(PAYMENT_CAPTURED, "The gateway took the order's total."),
        Contract::of::<PaymentDeclined>(
            PAYMENT_DECLINED,
            "The gateway refused the card, and took nothing.",
        ),
        Contract::of::<PaymentFailed>(
            PAYMENT_FAILED,
            "The gateway failed (or its answer was lost and it charged nothing), and took nothing.",
        ),
        Contract::of::<PaymentRefunded>(
            PAYMENT_REFUNDED,
            "A captured payment went back to the card.",
        ),
    ],
};

/// `payment.failed`: the gateway failed, for `reason`, and took nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentFailed {
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub amount: Money,
    pub reason: String,
}

impl Payload for PaymentFailed {
    fn sample() -> Self {
        let (payment_id, order_id, amount) = sample_ids();
        PaymentFailed {
            payment_id,
            order_id,
            amount,
            reason: "card_declined".into(),
        }
    }
}

/// `payment.captured`: the gateway took `amount` for the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentCaptured {
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub amount: Money,
}

impl Payload for PaymentCaptured {
    fn sample() -> Self {
        let (payment_id, order_id, amount) = sample_ids();
        PaymentCaptured {
            payment_id,
            order_id,
            amount,
        }
    }
}

/// `payment.declined`: the gateway refused the card, for `reason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentDeclined {
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub amount: Money,
    pub reason: String,
}

impl Payload for PaymentDeclined {
    fn sample() -> Self {
        let (payment_id, order_id, amount) = sample_ids();
        PaymentDeclined {
            payment_id,
            order_id,
            amount,
            reason: "card_declined".into(),
        }
    }
}

/// `payment.refunded`: `amount` went back to the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentRefunded {
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub amount: Money,
}

impl Payload for PaymentRefunded {
    fn sample() -> Self {
        let (payment_id, order_id, amount) = sample_ids();
        PaymentRefunded {
            payment_id,
            order_id,
            amount,
        }
    }
}

fn sample_ids() -> (PaymentId, OrderId, Money) {
    let payment = "01936a2e-7c00-7000-8000-000000000003";
    let order = "01936a2e-7c00-7000-8000-000000000002";
    (
        payment.parse().expect("a sample id"),
        order.parse().expect("a sample id"),
        Money::parse("49.48").expect("a sample amount"),
    )
}
