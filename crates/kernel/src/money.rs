//! Exact money: `rust_decimal`, two decimal places, never negative, never a float.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of money with exactly two decimal places, zero or more.
///
/// Rendered as a string (`"19.99"`); parsed from a string or a JSON number with at most two
/// decimal places. The field is private: a `Money` that breaks those rules cannot exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("{0:?} is not a decimal number")]
    NotANumber(String),
    #[error("{0} must not be negative")]
    Negative(Decimal),
    #[error("{0} has more than two decimal places")]
    TooPrecise(Decimal),
    #[error("amount is too large")]
    Overflow,
}

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Parses `"19.99"`, `"5"`, `"0.5"`; rejects text, negatives and a third decimal place.
    pub fn parse(text: &str) -> Result<Money, MoneyError> {
        let trimmed = text.trim();
        let value: Decimal = trimmed
            .parse()
            .or_else(|_| Decimal::from_scientific(trimmed))
            .map_err(|_| MoneyError::NotANumber(text.to_owned()))?;
        Money::from_decimal(value)
    }

    /// Accepts a decimal with at most two significant decimal places (`1.500` is fine).
    pub fn from_decimal(value: Decimal) -> Result<Money, MoneyError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(MoneyError::Negative(value));
        }
        let normalized = value.normalize();
        if normalized.scale() > 2 {
            return Err(MoneyError::TooPrecise(value));
        }
        let mut amount = normalized;
        amount.rescale(2);
        Ok(Money(amount))
    }

    pub fn amount(&self) -> Decimal {
        self.0
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_mul(self, quantity: u32) -> Option<Money> {
        self.0.checked_mul(Decimal::from(quantity)).map(|mut d| {
            d.rescale(2);
            Money(d)
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let input = MoneyInput::deserialize(deserializer)?;
        input.parse().map_err(serde::de::Error::custom)
    }
}

/// A money amount as a client sent it (a JSON string or number), not yet validated.
///
/// Request bodies use this so that a wrong amount is a `422` with a field error rather than
/// a deserialization failure; a JSON type that can never be money (bool, object) still
/// fails to deserialize.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoneyInput(String);

impl MoneyInput {
    pub fn parse(&self) -> Result<Money, MoneyError> {
        Money::parse(&self.0)
    }
}

impl From<&str> for MoneyInput {
    fn from(value: &str) -> Self {
        MoneyInput(value.to_owned())
    }
}

impl<'de> Deserialize<'de> for MoneyInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = MoneyInput;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal amount as a string or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MoneyInput, E> {
                Ok(MoneyInput(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MoneyInput, E> {
                Ok(MoneyInput(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MoneyInput, E> {
                Ok(MoneyInput(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<MoneyInput, E> {
                // `{}` prints the shortest text that reads back as the same f64, which for
                // any amount a client types (<= 15 significant digits) is what it typed.
                Ok(MoneyInput(format!("{v}")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The OpenAPI schema of an amount in a response: a string with exactly two decimals.
impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(r"^\d+\.\d{2}$"))
            .description(Some(
                "An exact decimal amount, rendered as a string with exactly two decimal \
                 places (never a JSON number).",
            ))
            .examples(["19.99"])
            .into()
    }
}

impl utoipa::ToSchema for Money {
    fn name() -> std::borrow::Cow<'static, str> {
        "Money".into()
    }
}

/// The OpenAPI schema of an amount in a request: a string or a number.
impl utoipa::PartialSchema for MoneyInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .examples(["19.99"]),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .examples([19.99]),
            )
            .description(Some(
                "An exact decimal amount as a string (`\"19.99\"`) or a JSON number (`19.99`), \
                 with at most two decimal places. More places, a negative amount or a \
                 non-numeric string is `422 validation_failed`; another JSON type (`true`, \
                 `{}`) is `400 invalid_body`. Answers always render amounts as strings.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for MoneyInput {
    fn name() -> std::borrow::Cow<'static, str> {
        "MoneyInput".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_amounts() {
        let cases: [(&str, Result<&str, ()>); 12] = [
            ("19.99", Ok("19.99")),
            ("5", Ok("5.00")),
            ("0.5", Ok("0.50")),
            ("1.500", Ok("1.50")),
            (" 7.10 ", Ok("7.10")),
            ("0", Ok("0.00")),
            ("-0", Ok("0.00")),
            ("1e2", Ok("100.00")),
            ("19.999", Err(())),
            ("-1", Err(())),
            ("abc", Err(())),
            ("", Err(())),
        ];
        for (input, expected) in cases {
            let got = Money::parse(input).map(|m| m.to_string()).map_err(|_| ());
            assert_eq!(got, expected.map(str::to_owned), "input {input:?}");
        }
    }

    #[test]
    fn json_numbers_and_strings_are_accepted_other_types_are_not() {
        let m: Money = serde_json::from_str("19.99").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"19.99\"");
        let m: Money = serde_json::from_str("\"0.10\"").unwrap();
        assert_eq!(m.to_string(), "0.10");
        assert!(serde_json::from_str::<Money>("0.001").is_err());
        assert!(serde_json::from_str::<MoneyInput>("true").is_err());
        assert!(serde_json::from_str::<MoneyInput>("{}").is_err());
        assert_eq!(
            serde_json::from_str::<MoneyInput>("1e3")
                .unwrap()
                .parse()
                .unwrap()
                .to_string(),
            "1000.00"
        );
    }

    #[test]
    fn arithmetic_is_exact() {
        let price = Money::parse("0.10").unwrap();
        let total = price
            .checked_mul(3)
            .unwrap()
            .checked_add(Money::parse("0.20").unwrap())
            .unwrap();
        assert_eq!(total.to_string(), "0.50");
    }
}
