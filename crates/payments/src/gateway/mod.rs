//! The port to the payment gateway (the card processor), and the simulated gateway the shop
//! runs with by default.
//!
//! **Idempotency key.** Every call carries the payment id, and a real gateway must be
//! called with it as its idempotency key (e.g. Stripe's `Idempotency-Key` header): a charge
//! retried with the same payment id, after a timeout or a lost answer, is then the same
//! charge, never a second one. The same goes for a refund. [`PaymentGateway::lookup`]
//! asks what became of a key, for whoever lost the answer.
//!
//! **Void.** "The gateway never heard of the key" is not "nothing was taken": a charge may
//! still be on its way (a slow network, a stalled process). [`PaymentGateway::void`]
//! closes the key, as a real gateway lets a caller cancel a payment intent (Stripe:
//! `POST /v1/payment_intents/{id}/cancel`): a charge that arrives under it afterwards takes
//! nothing, and a charge that came first is answered instead. Only after a void is a key
//! the gateway never heard of certainly uncharged.

mod schema;
mod simulated;

use async_trait::async_trait;
use kernel::{Money, PaymentId};

pub use simulated::{GATEWAY_SCHEMA, LedgerOutcome, SimulatedGateway, SimulatedSettings};

/// What the gateway answers for a successful charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayReceipt {
    /// The gateway's own id for the charge, kept with the payment for support.
    pub reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The card was refused; nothing was taken. The text is the gateway's reason.
    #[error("card declined: {0}")]
    Declined(String),
    /// The gateway failed and says so; nothing was taken, retry later.
    #[error("gateway unavailable: {0}")]
    Unavailable(String),
    /// The gateway does not know the token.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The gateway refused a refund: it holds no charge under that key.
    #[error("nothing to refund: {0}")]
    NotCharged(String),
    /// The key was voided before this charge reached the gateway; nothing was taken.
    #[error("voided: {0}")]
    Voided(String),
    /// The call may or may not have been carried out (the answer was lost after the
    /// request reached the gateway): like no answer in time, only asking by key tells.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
}

/// What the gateway did under one idempotency key, as [`PaymentGateway::lookup`] tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeState {
    /// The money was taken (and not given back).
    Charged(GatewayReceipt),
    /// The money was taken and given back.
    Refunded(GatewayReceipt),
    /// The card was refused, for this reason; nothing was taken.
    Declined(String),
    /// The gateway failed, for this reason; nothing was taken.
    Failed(String),
    /// The key was voided before any charge under it reached the gateway: nothing was
    /// taken, and nothing will be.
    Voided,
    /// The gateway has not heard of the key, yet: nothing was taken so far, but a charge
    /// still on its way may take it (see [`PaymentGateway::void`]).
    Unknown,
}

/// A card processor. `payment_id` is the idempotency key of each call (see the module docs).
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Takes `amount` from the card behind `token`. Asked again with the same
    /// `payment_id`, answers the first call's outcome and takes nothing more.
    async fn charge(
        &self,
        payment_id: PaymentId,
        amount: Money,
        token: &str,
    ) -> Result<GatewayReceipt, GatewayError>;

    /// Gives back `amount` of the captured charge made for `payment_id`. Asked again,
    /// answers `Ok` and gives back nothing more.
    async fn refund(&self, payment_id: PaymentId, amount: Money) -> Result<(), GatewayError>;

    /// What happened to the charge made under `payment_id`, if any.
    async fn lookup(&self, payment_id: PaymentId) -> Result<ChargeState, GatewayError>;

    /// Closes the key `payment_id`: a charge under it that reaches the gateway afterwards
    /// takes nothing (it answers [`GatewayError::Voided`]). Answers what the key holds
    /// then: [`ChargeState::Voided`] if no charge had reached the gateway, else that
    /// charge's outcome (`Charged`, `Refunded`, `Declined`, `Failed`), which the void leaves
    /// as it is. Asked again, answers the same; never [`ChargeState::Unknown`].
    async fn void(&self, payment_id: PaymentId) -> Result<ChargeState, GatewayError>;
}
