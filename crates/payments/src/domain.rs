//! Parse, don't validate: a chargeable amount that exists is valid. And the stored form of
//! a payment's status.

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use kernel::Money;
use kernel::db::text::{from_text, to_text};
use payments_api::PaymentStatus;
use rust_decimal::Decimal;

/// An amount the module can charge: more than zero, and within `numeric(12, 2)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Amount(Money);

/// The largest amount `payments.amount` holds: 9999999999.99 ([`payments_api::max_charge`]).
fn max_amount() -> Decimal {
    payments_api::max_charge().amount()
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

/// A [`PaymentStatus`] as `payments.payments.status` stores it: text, through the
/// `-api` type's `as_str`/`FromStr` (which knows no diesel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub(crate) struct StoredStatus(pub(crate) PaymentStatus);

impl ToSql<Text, Pg> for StoredStatus {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        to_text(self.0.as_str(), out)
    }
}

impl FromSql<Text, Pg> for StoredStatus {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        from_text(bytes).map(StoredStatus)
    }
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
        for status in PaymentStatus::ALL {
            assert_eq!(status.as_str().parse::<PaymentStatus>().unwrap(), status);
        }
        assert!("lost".parse::<PaymentStatus>().is_err());
    }
}
