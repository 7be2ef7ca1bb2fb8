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

/// The longest product name, in characters after trimming.
pub(crate) const NAME_CHARS: usize = 200;
/// The longest description, in characters.
pub(crate) const DESCRIPTION_CHARS: usize = 5000;
/// The highest price, in whole units.
pub(crate) const MAX_PRICE: u64 = 1_000_000_000;

/// [`kernel::input::line`] of at most [`NAME_CHARS`].
pub(crate) struct ProductName(String);

impl ProductName {
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        kernel::input::line(raw, NAME_CHARS).map(ProductName)
    }

    pub(crate) fn into_inner(self) -> String {
        self.0
    }
}

/// [`kernel::input::text`] of at most [`DESCRIPTION_CHARS`].
pub(crate) struct Description(String);

impl Description {
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        kernel::input::text(raw, DESCRIPTION_CHARS).map(Description)
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
        if money.amount() > Decimal::from(MAX_PRICE) {
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
