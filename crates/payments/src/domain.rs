//! Parse, don't validate: a chargeable amount that exists is valid.

use kernel::Money;
use payments_api::PaymentStatus;
use rust_decimal::Decimal;

/// An amount the module can charge: more than zero, and within `numeric(12, 2)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Amount(Money);

/// The largest amount `payments.amount` holds: 9999999999.99.
fn max_amount() -> Decimal {
    Decimal::new(999_999_999_999, 2)
}

impl Amount {
    pub(crate) fn parse(money: Money) -> Result<Self, String> {
        if money.is_zero() {
            return Err("must be greater than 0".to_owned());
        }
        if money.amount() > max_amount() {
            return Err(format!("must be at most {}, got {money}", max_amount()));
        }
        Ok(Amount(money))
    }

    pub(crate) fn money(&self) -> Money {
        self.0
    }
}

pub(crate) fn parse_status(text: &str) -> anyhow::Result<PaymentStatus> {
    Ok(match text {
        "captured" => PaymentStatus::Captured,
        "declined" => PaymentStatus::Declined,
        "refunded" => PaymentStatus::Refunded,
        other => anyhow::bail!("unknown payment status {other:?} in the database"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        let money = |s| Money::parse(s).unwrap();
        assert_eq!(max_amount().to_string(), "9999999999.99");
        assert!(Amount::parse(money("0.01")).is_ok());
        assert!(Amount::parse(money("9999999999.99")).is_ok());
        assert!(Amount::parse(money("0")).is_err());
        assert!(Amount::parse(money("10000000000")).is_err());
    }

    #[test]
    fn statuses_round_trip() {
        for status in [
            PaymentStatus::Captured,
            PaymentStatus::Declined,
            PaymentStatus::Refunded,
        ] {
            assert_eq!(parse_status(status.as_str()).unwrap(), status);
        }
        assert!(parse_status("pending").is_err());
    }
}
