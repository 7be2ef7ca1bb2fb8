//! The payments module's contract: charging an order's total through the payment gateway,
//! refunding it, and reading payments back.
//!
//! Plain data, the [`PaymentApi`] trait, the [`PaymentError`] enum and the integration
//! [`events`] the module publishes. Never depends on diesel, actix-web or tokio-postgres,
//! and never on another module: an order is only an opaque [`OrderId`] and an amount.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{FieldError, IntoProblem, Money, OrderId, PaymentId, Problem, UserId};
use serde::{Deserialize, Serialize};

/// One attempt to charge an order. At most one payment per order is ever `Pending`,
/// `Captured` or `Refunded` at a time; any number may be `Declined` or `Failed` before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Payment {
    pub id: PaymentId,
    pub order_id: OrderId,
    /// The order's total at the moment of the charge.
    pub amount: Money,
    pub status: PaymentStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `pending -> captured -> refunded`, `pending -> declined`, `pending -> failed`; `declined`
/// and `failed` are final.
// Its text (`as_str`, `FromStr`, serde) is written only here; the payments crate stores it
// through its own diesel mapping of these two functions. (A `//` comment: doc comments of
// this type are its OpenAPI description.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Recorded before the gateway was asked; its outcome is not known yet.
    Pending,
    /// The gateway took the money.
    Captured,
    /// The gateway refused the card; nothing was taken.
    Declined,
    /// The money was taken and given back.
    Refunded,
    /// The gateway failed; it certainly took nothing.
    Failed,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 5] = [
        PaymentStatus::Pending,
        PaymentStatus::Captured,
        PaymentStatus::Declined,
        PaymentStatus::Refunded,
        PaymentStatus::Failed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Captured => "captured",
            PaymentStatus::Declined => "declined",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::Failed => "failed",
        }
    }
}

/// Text that names no [`PaymentStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown payment status {0:?}")]
pub struct UnknownPaymentStatus(pub String);

impl std::str::FromStr for PaymentStatus {
    type Err = UnknownPaymentStatus;

    /// The inverse of [`PaymentStatus::as_str`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        PaymentStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| UnknownPaymentStatus(text.to_owned()))
    }
}

/// Tokens the built-in simulated gateway (and the in-memory fake) understand, as the HTTP
/// contract documents them. Any other token is [`PaymentError::InvalidToken`].
pub mod tokens {
    /// The charge succeeds.
    pub const VISA: &str = "tok_visa";
    /// The card is declined: [`crate::PaymentError::Declined`].
    pub const DECLINED: &str = "tok_declined";
    /// The gateway fails: [`crate::PaymentError::GatewayUnavailable`].
    pub const GATEWAY_ERROR: &str = "tok_gateway_error";
    /// The charge succeeds, but the gateway answers only after the caller's deadline.
    pub const TIMEOUT: &str = "tok_timeout";
    /// Nothing is charged, and the gateway says so only after the caller's deadline.
    pub const TIMEOUT_FAILED: &str = "tok_timeout_failed";
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("payment {0} not found")]
    NotFound(PaymentId),
    /// The gateway refused the card. A `declined` payment and a `payment.declined` event
    /// were recorded; the order may be charged again with another token.
    #[error("payment for order {order_id} was declined")]
    Declined { order_id: OrderId },
    /// The gateway failed and said so: a `failed` payment and a `payment.failed` event were
    /// recorded, nothing was taken, and the charge is safe to retry.
    #[error("payment gateway unavailable: {0}")]
    GatewayUnavailable(String),
    /// The gateway did not answer within its deadline: the payment stays `pending` until
    /// its outcome is settled (by asking the gateway by its id).
    #[error(
        "payment {payment_id} of order {order_id} is pending: the gateway did not answer in time"
    )]
    Pending {
        order_id: OrderId,
        payment_id: PaymentId,
    },
    /// Another payment of the order is `pending` (and stayed so for the gateway's
    /// deadline): nothing was charged; retry once it has settled.
    #[error("order {order_id} has a pending payment {payment_id}")]
    AlreadyPending {
        order_id: OrderId,
        payment_id: PaymentId,
    },
    /// The gateway did not accept the payment token (`reason` is the gateway's, and does
    /// not repeat the token). Nothing was recorded.
    #[error("payment token {token:?} was not accepted: {reason}")]
    InvalidToken { token: String, reason: String },
    #[error("invalid payment input")]
    Invalid(Vec<FieldError>),
    /// Not `transparent`: the cause stays in the `source()` chain, so a
    /// [`kernel::Unavailable`] under it is still found (and answered `503`) by whoever
    /// wraps this error again.
    #[error("unexpected failure in the payments module")]
    Unexpected(#[from] anyhow::Error),
}

impl IntoProblem for PaymentError {
    fn into_problem(self) -> Result<Problem, anyhow::Error> {
        Ok(match self {
            PaymentError::NotFound(id) => {
                Problem::not_found("payment_not_found", format!("payment {id} does not exist"))
            }
            e @ PaymentError::Declined { .. } => Problem::new(402, "payment_declined", e),
            PaymentError::GatewayUnavailable(reason) => Problem::new(
                502,
                "payment_gateway_error",
                format!(
                    "the payment gateway failed ({reason}); nothing was charged and it is safe to retry"
                ),
            ),
            e @ PaymentError::Pending { .. } => Problem::new(
                504,
                "payment_pending",
                format!("{e}; its outcome is being settled, do not pay again"),
            ),
            e @ PaymentError::AlreadyPending { .. } => Problem::new(
                409,
                "payment_pending",
                format!("{e}; wait until it has settled"),
            ),
            PaymentError::InvalidToken { token, reason } => Problem {
                errors: vec![FieldError::new(
                    "payment_token",
                    format!("not accepted by the payment gateway: {reason}"),
                )],
                ..Problem::new(
                    422,
                    "invalid_payment_token",
                    format!("the payment gateway did not accept payment token {token:?}"),
                )
            },
            PaymentError::Invalid(errors) => Problem::validation(errors),
            PaymentError::Unexpected(cause) => return Err(cause),
        })
    }
}

#[async_trait]
pub trait PaymentApi: Send + Sync {
    /// Charges `amount` (more than zero) for `order_id` with the card behind `token`.
    ///
    /// At most one captured payment per order, ever: when the order already has a
    /// captured or refunded payment, that payment is returned and nothing is charged, with
    /// whatever `amount` and `token` (so a retried or concurrent confirm never charges
    /// twice). The payment is recorded `pending` before the gateway is asked. A declined
    /// card settles it `declined` and answers [`PaymentError::Declined`]; a gateway failure
    /// settles it `failed` ([`PaymentError::GatewayUnavailable`]); an unknown token
    /// ([`PaymentError::InvalidToken`]) leaves nothing recorded; no answer within the
    /// gateway's deadline leaves it `pending` ([`PaymentError::Pending`]). While another
    /// payment of the order is pending, the charge waits for it up to that deadline, then
    /// answers [`PaymentError::AlreadyPending`].
    async fn charge(
        &self,
        order_id: OrderId,
        amount: Money,
        token: &str,
    ) -> Result<Payment, PaymentError>;

    /// Gives back the order's captured payment (status `refunded`). Idempotent: an already
    /// refunded payment is returned unchanged. `Ok(None)` when the order has no captured or
    /// refunded payment (never charged, only declined or failed, or still pending: a
    /// pending payment that settles captured is the caller's to refund then). The refund is
    /// recorded before the gateway is asked: when the gateway fails
    /// ([`PaymentError::GatewayUnavailable`]) or does not answer in time
    /// ([`PaymentError::Pending`]), it stays recorded and is asked for again until the
    /// gateway confirms it, so the caller need not retry.
    async fn refund(&self, order_id: OrderId) -> Result<Option<Payment>, PaymentError>;

    async fn get(&self, id: PaymentId) -> Result<Payment, PaymentError>;

    /// The payments of `order_id`, oldest first: its newest [`MAX_LISTED`] (declined
    /// attempts past those are left out; a pending, captured or refunded payment is
    /// always among them); empty for an unknown order.
    async fn for_order(&self, order_id: OrderId) -> Result<Vec<Payment>, PaymentError>;
}

/// The most payments [`PaymentApi::for_order`] answers: an order's newest.
pub const MAX_LISTED: i64 = 100;

/// The largest amount one payment charges: 9,999,999,999.99 (what a payment's amount
/// holds). An order whose total is larger is refused when it is placed.
pub fn max_charge() -> Money {
    Money::parse("9999999999.99").expect("a valid amount")
}

/// Whose an order is: the one question the payments routes ask about orders, to show a
/// customer the payments of their own orders only (and `404`, as for an unknown payment,
/// for anyone else's). The orders module implements it; payments still knows an order
/// only by its id.
#[async_trait]
pub trait OrderOwners: Send + Sync {
    /// The user who placed `order_id`, or `None` for an unknown order.
    async fn owner(&self, order_id: OrderId) -> anyhow::Result<Option<UserId>>;
}

pub mod events;

#[cfg(feature = "testing")]
pub mod testing {
    //! An in-memory [`PaymentApi`] for other modules' suites, so they run without the
    //! payments module. Same tokens ([`crate::tokens`]) and the same promises: at most one
    //! captured payment per order, declines and gateway failures recorded, unknown tokens
    //! recording nothing, idempotent refunds. The slow tokens leave a `pending` payment,
    //! which the fake never settles (it has no reconciler), and a charge while one is
    //! pending is refused at once. [`InMemoryPayments::charges`] counts what the "gateway"
    //! actually charged; [`InMemoryPayments::gateway_down`] makes refunds fail as they do
    //! while the gateway is down (recorded, left to be retried).

    use std::sync::Mutex;

    use super::*;

    /// An [`OrderOwners`] that knows the orders a test tells it of.
    #[derive(Default)]
    pub struct KnownOwners(Mutex<std::collections::HashMap<OrderId, UserId>>);

    impl KnownOwners {
        /// Records that `user` placed `order`.
        pub fn insert(&self, order: OrderId, user: UserId) {
            self.0.lock().unwrap().insert(order, user);
        }
    }

    #[async_trait]
    impl OrderOwners for KnownOwners {
        async fn owner(&self, order_id: OrderId) -> anyhow::Result<Option<UserId>> {
            Ok(self.0.lock().unwrap().get(&order_id).copied())
        }
    }

    #[derive(Default)]
    pub struct InMemoryPayments {
        state: Mutex<State>,
    }

    #[derive(Default)]
    struct State {
        /// In creation order.
        payments: Vec<Payment>,
        charges: usize,
        refunds: usize,
        gateway_down: bool,
    }

    impl InMemoryPayments {
        /// Successful gateway charges so far (repeats of a paid order do not count).
        pub fn charges(&self) -> usize {
            self.lock().charges
        }

        /// Gateway refunds so far (repeats do not count).
        pub fn refunds(&self) -> usize {
            self.lock().refunds
        }

        /// While `down`, a refund of a captured payment answers
        /// [`PaymentError::GatewayUnavailable`] and gives nothing back.
        pub fn gateway_down(&self, down: bool) {
            self.lock().gateway_down = down;
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    /// The order's pending, captured or refunded payment.
    fn live(state: &mut State, order_id: OrderId) -> Option<&mut Payment> {
        state.payments.iter_mut().find(|p| {
            p.order_id == order_id
                && !matches!(p.status, PaymentStatus::Declined | PaymentStatus::Failed)
        })
    }

    #[async_trait]
    impl PaymentApi for InMemoryPayments {
        async fn charge(
            &self,
            order_id: OrderId,
            amount: Money,
            token: &str,
        ) -> Result<Payment, PaymentError> {
            if amount.is_zero() {
                return Err(PaymentError::Invalid(vec![FieldError::new(
                    "amount",
                    "must be greater than 0",
                )]));
            }
            let mut state = self.lock();
            if let Some(existing) = live(&mut state, order_id) {
                if existing.status == PaymentStatus::Pending {
                    return Err(PaymentError::AlreadyPending {
                        order_id,
                        payment_id: existing.id,
                    });
                }
                return Ok(existing.clone());
            }
            let status = match token {
                tokens::VISA => PaymentStatus::Captured,
                tokens::DECLINED => PaymentStatus::Declined,
                tokens::GATEWAY_ERROR => PaymentStatus::Failed,
                tokens::TIMEOUT | tokens::TIMEOUT_FAILED => PaymentStatus::Pending,
                other => {
                    return Err(PaymentError::InvalidToken {
                        token: other.to_owned(),
                        reason: "unknown token".to_owned(),
                    });
                }
            };
            let now = Utc::now();
            let payment = Payment {
                id: PaymentId::generate(),
                order_id,
                amount,
                status,
                created_at: now,
                updated_at: now,
            };
            state.payments.push(payment.clone());
            match status {
                PaymentStatus::Declined => return Err(PaymentError::Declined { order_id }),
                PaymentStatus::Failed => {
                    return Err(PaymentError::GatewayUnavailable(
                        "simulated gateway error".to_owned(),
                    ));
                }
                PaymentStatus::Pending => {
                    return Err(PaymentError::Pending {
                        order_id,
                        payment_id: payment.id,
                    });
                }
                PaymentStatus::Captured | PaymentStatus::Refunded => {}
            }
            state.charges += 1;
            Ok(payment)
        }

        async fn refund(&self, order_id: OrderId) -> Result<Option<Payment>, PaymentError> {
            let mut state = self.lock();
            let Some(payment) = live(&mut state, order_id) else {
                return Ok(None);
            };
            if payment.status == PaymentStatus::Pending {
                return Ok(None);
            }
            if payment.status == PaymentStatus::Refunded {
                return Ok(Some(payment.clone()));
            }
            if state.gateway_down {
                return Err(PaymentError::GatewayUnavailable(
                    "simulated gateway outage".to_owned(),
                ));
            }
            let payment = live(&mut state, order_id).expect("found above");
            payment.status = PaymentStatus::Refunded;
            payment.updated_at = Utc::now();
            let payment = payment.clone();
            state.refunds += 1;
            Ok(Some(payment))
        }

        async fn get(&self, id: PaymentId) -> Result<Payment, PaymentError> {
            self.lock()
                .payments
                .iter()
                .find(|p| p.id == id)
                .cloned()
                .ok_or(PaymentError::NotFound(id))
        }

        async fn for_order(&self, order_id: OrderId) -> Result<Vec<Payment>, PaymentError> {
            Ok(self
                .lock()
                .payments
                .iter()
                .filter(|p| p.order_id == order_id)
                .cloned()
                .collect())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn money(text: &str) -> Money {
            Money::parse(text).unwrap()
        }

        #[tokio::test]
        async fn charges_once_per_order_and_refunds_once() {
            let fake = InMemoryPayments::default();
            let order = OrderId::generate();
            let first = fake
                .charge(order, money("9.99"), tokens::VISA)
                .await
                .unwrap();
            assert_eq!(first.status, PaymentStatus::Captured);
            let again = fake
                .charge(order, money("9.99"), tokens::VISA)
                .await
                .unwrap();
            assert_eq!(again, first, "a paid order is not charged twice");
            assert_eq!(fake.charges(), 1);

            let refunded = fake.refund(order).await.unwrap().unwrap();
            assert_eq!(
                (refunded.id, refunded.status),
                (first.id, PaymentStatus::Refunded)
            );
            assert_eq!(fake.refund(order).await.unwrap().unwrap(), refunded);
            assert_eq!(fake.refunds(), 1);
            let after = fake
                .charge(order, money("9.99"), tokens::VISA)
                .await
                .unwrap();
            assert_eq!(after, refunded, "a refunded order is not charged again");
            assert_eq!(fake.charges(), 1);
            assert_eq!(fake.for_order(order).await.unwrap(), vec![refunded]);
        }

        #[tokio::test]
        async fn follows_the_token_rules() {
            let fake = InMemoryPayments::default();
            let order = OrderId::generate();
            let cases = [
                (tokens::GATEWAY_ERROR, "GatewayUnavailable"),
                ("tok_unknown", "InvalidToken"),
                (tokens::DECLINED, "Declined"),
            ];
            for (token, expected) in cases {
                let err = fake.charge(order, money("5"), token).await.unwrap_err();
                assert!(format!("{err:?}").starts_with(expected), "{token}: {err:?}");
            }
            let recorded: Vec<PaymentStatus> = fake
                .for_order(order)
                .await
                .unwrap()
                .iter()
                .map(|p| p.status)
                .collect();
            assert_eq!(
                recorded,
                [PaymentStatus::Failed, PaymentStatus::Declined],
                "the failure and the decline are recorded, the unknown token is not"
            );
            assert_eq!(fake.refund(order).await.unwrap(), None);
            assert!(matches!(
                fake.charge(order, Money::ZERO, tokens::VISA).await,
                Err(PaymentError::Invalid(_))
            ));
            let paid = fake.charge(order, money("5"), tokens::VISA).await.unwrap();
            assert_eq!(fake.get(paid.id).await.unwrap(), paid);
            assert_eq!(fake.for_order(order).await.unwrap().len(), 3);
            assert_eq!(fake.charges(), 1);

            let slow = OrderId::generate();
            let pending = fake.charge(slow, money("5"), tokens::TIMEOUT).await;
            let Err(PaymentError::Pending { payment_id, .. }) = pending else {
                panic!("{pending:?}");
            };
            assert!(matches!(
                fake.charge(slow, money("5"), tokens::VISA).await,
                Err(PaymentError::AlreadyPending { payment_id: p, .. }) if p == payment_id
            ));
            assert_eq!(fake.refund(slow).await.unwrap(), None);
            assert_eq!(fake.charges(), 1);
        }
    }
}

#[cfg(test)]
mod tests;
