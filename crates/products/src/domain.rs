//! Parse, don't validate: product fields that exist are valid.

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use kernel::Money;
use kernel::db::text::{from_text, to_text};
use products_api::{MAX_STOCK, ReservationStatus};
use rust_decimal::Decimal;

pub(crate) struct ProductName(String);

impl ProductName {
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > 200 {
            return Err(format!(
                "must be 1 to 200 characters after trimming, got {chars}"
            ));
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters".to_owned());
        }
        Ok(ProductName(name.to_owned()))
    }

    pub(crate) fn into_inner(self) -> String {
        self.0
    }
}

pub(crate) struct Description(String);

impl Description {
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        let chars = raw.chars().count();
        if chars > 5000 {
            return Err(format!("must be at most 5000 characters, got {chars}"));
        }
        Ok(Description(raw.to_owned()))
    }

    pub(crate) fn into_inner(self) -> String {
        self.0
    }
}

/// A catalog price: more than zero, at most one billion.
pub(crate) struct Price(Money);

impl Price {
    pub(crate) fn parse(money: Money) -> Result<Self, String> {
        if money.is_zero() {
            return Err("must be greater than 0".to_owned());
        }
        if money.amount() > Decimal::from(1_000_000_000) {
            return Err(format!("must be at most 1000000000.00, got {money}"));
        }
        Ok(Price(money))
    }

    pub(crate) fn amount(&self) -> Decimal {
        self.0.amount()
    }
}

/// A stock level or restock quantity within `min..=MAX_STOCK`.
pub(crate) fn stock_quantity(value: i64, min: i64) -> Result<i64, String> {
    if value < min || value > MAX_STOCK {
        return Err(format!(
            "must be an integer from {min} to {MAX_STOCK}, got {value}"
        ));
    }
    Ok(value)
}

/// A [`ReservationStatus`] as `products.reservations.status` stores it: text, through the
/// `-api` type's `as_str`/`FromStr` (which knows no diesel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub(crate) struct StoredStatus(pub(crate) ReservationStatus);

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
    fn prices() {
        let money = |s| Money::parse(s).unwrap();
        assert!(Price::parse(money("0.01")).is_ok());
        assert!(Price::parse(money("0")).is_err());
        assert!(Price::parse(money("1000000000")).is_ok());
        assert!(Price::parse(money("1000000000.01")).is_err());
    }

    #[test]
    fn stock_bounds() {
        assert_eq!(stock_quantity(0, 0), Ok(0));
        assert!(stock_quantity(0, 1).is_err());
        assert!(stock_quantity(-1, 0).is_err());
        assert!(stock_quantity(MAX_STOCK, 0).is_ok());
        assert!(stock_quantity(MAX_STOCK + 1, 0).is_err());
    }

    #[test]
    fn names_and_descriptions() {
        assert_eq!(ProductName::parse(" Mug ").unwrap().into_inner(), "Mug");
        assert!(ProductName::parse("").is_err());
        assert!(ProductName::parse(&"x".repeat(201)).is_err());
        assert!(Description::parse("").is_ok());
        assert!(Description::parse(&"x".repeat(5001)).is_err());
    }
}
