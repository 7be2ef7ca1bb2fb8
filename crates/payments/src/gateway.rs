//! The port to the payment gateway (the card processor), and the simulated gateway the shop
//! runs with by default.
//!
//! **Idempotency key.** Every call carries the payment id, and a real gateway must be
//! called with it as its idempotency key (e.g. Stripe's `Idempotency-Key` header): a charge
//! retried with the same payment id, after a timeout or a lost answer, is then the same
//! charge, never a second one. The same goes for a refund.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use kernel::{Money, PaymentId};
use payments_api::tokens;

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
    /// The gateway failed or could not be reached; nothing was taken, retry later.
    #[error("gateway unavailable: {0}")]
    Unavailable(String),
    /// The gateway does not know the token.
    #[error("invalid token: {0}")]
    InvalidToken(String),
}

/// A card processor. `payment_id` is the idempotency key of each call (see the module docs).
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Takes `amount` from the card behind `token`.
    async fn charge(
        &self,
        payment_id: PaymentId,
        amount: Money,
        token: &str,
    ) -> Result<GatewayReceipt, GatewayError>;

    /// Gives back `amount` of the captured charge made for `payment_id`.
    async fn refund(&self, payment_id: PaymentId, amount: Money) -> Result<(), GatewayError>;
}

/// The built-in gateway: no network, decided by the token.
///
/// `tok_visa` succeeds; `tok_declined` is declined ("card declined"); `tok_gateway_error`
/// is a gateway failure; any other token is unknown. Refunds always succeed. It counts the
/// charges and refunds it performed, so tests can prove a payment was taken exactly once.
#[derive(Debug, Default)]
pub struct SimulatedGateway {
    charges: AtomicUsize,
    refunds: AtomicUsize,
}

impl SimulatedGateway {
    /// Successful charges so far.
    pub fn charges(&self) -> usize {
        self.charges.load(Ordering::SeqCst)
    }

    /// Refunds so far.
    pub fn refunds(&self) -> usize {
        self.refunds.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn charge(
        &self,
        payment_id: PaymentId,
        _amount: Money,
        token: &str,
    ) -> Result<GatewayReceipt, GatewayError> {
        match token {
            tokens::VISA => {
                self.charges.fetch_add(1, Ordering::SeqCst);
                Ok(GatewayReceipt {
                    reference: format!("sim_ch_{}", payment_id.as_uuid().simple()),
                })
            }
            tokens::DECLINED => Err(GatewayError::Declined("card declined".to_owned())),
            tokens::GATEWAY_ERROR => Err(GatewayError::Unavailable(
                "simulated gateway error".to_owned(),
            )),
            other => Err(GatewayError::InvalidToken(format!(
                "unknown payment token {other:?}"
            ))),
        }
    }

    async fn refund(&self, _payment_id: PaymentId, _amount: Money) -> Result<(), GatewayError> {
        self.refunds.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_decide_and_only_successes_count() {
        let gateway = SimulatedGateway::default();
        let amount = Money::parse("1").unwrap();
        let cases: [(&str, Result<(), GatewayError>); 4] = [
            ("tok_visa", Ok(())),
            (
                "tok_declined",
                Err(GatewayError::Declined("card declined".into())),
            ),
            (
                "tok_gateway_error",
                Err(GatewayError::Unavailable("simulated gateway error".into())),
            ),
            (
                "tok_mastercard",
                Err(GatewayError::InvalidToken(
                    "unknown payment token \"tok_mastercard\"".into(),
                )),
            ),
        ];
        for (token, expected) in cases {
            let got = gateway
                .charge(PaymentId::generate(), amount, token)
                .await
                .map(|_| ());
            assert_eq!(got, expected, "{token}");
        }
        assert_eq!(gateway.charges(), 1);
        gateway.refund(PaymentId::generate(), amount).await.unwrap();
        assert_eq!(gateway.refunds(), 1);
    }
}
