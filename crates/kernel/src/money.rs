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

    /// Parses an amount as text: [`Money::TEXT_PATTERN`] exactly (`"19.99"`, `"5"`,
    /// `"0.5"`): no sign, no exponent, no whitespace, no leading zero, at most two decimal
    /// places and 15 digits before the point.
    pub fn parse(text: &str) -> Result<Money, MoneyError> {
        let not_a_number = || MoneyError::NotANumber(text.to_owned());
        if let Some(rest) = text.strip_prefix('-') {
            return match Money::parse(rest) {
                Ok(amount) if !amount.is_zero() => Err(MoneyError::Negative(-amount.0)),
                _ => Err(not_a_number()),
            };
        }
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let whole_ok = digits(whole)
            && (whole == "0" || (!whole.is_empty() && !whole.starts_with('0')))
            && whole.len() <= 15;
        let fraction_ok = digits(fraction) && (text.contains('.') != fraction.is_empty());
        if !whole_ok || !fraction_ok {
            return Err(not_a_number());
        }
        let value: Decimal = text.parse().map_err(|_| not_a_number())?;
        if fraction.len() > 2 {
            return Err(MoneyError::TooPrecise(value));
        }
        Money::from_decimal(value)
    }

    /// The shape [`Money::parse`] takes, as a JSON Schema `pattern`.
    pub const TEXT_PATTERN: &str = r"^(0|[1-9][0-9]{0,14})(\.[0-9]{1,2})?$";

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
pub enum MoneyInput {
    /// A JSON string: [`Money::parse`].
    Text(String),
    /// A JSON number, as the shortest decimal that reads back as the same number: any
    /// number of at most two decimal places, in any spelling (`19.9`, `1.99e1`, `20.0`).
    Number(String),
}

impl MoneyInput {
    pub fn parse(&self) -> Result<Money, MoneyError> {
        match self {
            MoneyInput::Text(text) => Money::parse(text),
            MoneyInput::Number(text) => {
                let value = text
                    .parse::<Decimal>()
                    .map_err(|_| MoneyError::NotANumber(text.clone()))?;
                Money::from_decimal(value)
            }
        }
    }
}

impl From<&str> for MoneyInput {
    fn from(value: &str) -> Self {
        MoneyInput::Text(value.to_owned())
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
                Ok(MoneyInput::Text(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MoneyInput, E> {
                Ok(MoneyInput::Number(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MoneyInput, E> {
                Ok(MoneyInput::Number(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<MoneyInput, E> {
                // `{}` prints the shortest text that reads back as the same f64, which for
                // any amount a client types (<= 15 significant digits) is what it typed.
                Ok(MoneyInput::Number(format!("{v}")))
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

/// The OpenAPI schema of an amount in a request: a string of [`Money::TEXT_PATTERN`], or a
/// number of cents (`multipleOf: 0.01`), zero or more.
impl utoipa::PartialSchema for MoneyInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::Schema::OneOf(MoneyInput::schema_within(
            None,
            "An exact decimal amount, zero or more",
        ))
        .into()
    }
}

impl MoneyInput {
    /// The schema of an amount: zero or more with no `max`; more than zero and at most
    /// `max` (a power of ten: `1000000000`) with one. The string branch's `pattern` states
    /// the bounds exactly as the number branch's `minimum`/`maximum` do.
    pub fn schema_within(max: Option<u64>, description: &str) -> utoipa::openapi::schema::OneOf {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        let (pattern, number) = match max {
            None => (
                Money::TEXT_PATTERN.to_owned(),
                ObjectBuilder::new().minimum(Some(0)),
            ),
            Some(max) => {
                let text = max.to_string();
                assert!(
                    text.len() > 1 && text[1..].bytes().all(|b| b == b'0') && text.starts_with('1'),
                    "{max} is not a power of ten"
                );
                // Below `max`: fewer digits than it, not zero; `max` itself; nothing above.
                let pattern = format!(
                    r"^([1-9][0-9]{{0,{}}}(\.[0-9]{{1,2}})?|0\.(0[1-9]|[1-9][0-9]?)|{max}(\.0{{1,2}})?)$",
                    text.len() - 2
                );
                (
                    pattern,
                    ObjectBuilder::new()
                        .exclusive_minimum(Some(0))
                        .maximum(Some(max)),
                )
            }
        };
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(pattern))
                    .examples(["19.99"]),
            )
            .item(
                number
                    .schema_type(Type::Number)
                    .multiple_of(Some(0.01))
                    .examples([19.99]),
            )
            .description(Some(format!(
                "{description}, as a string (`\"19.99\"`: digits without a sign, an exponent, \
                 spaces or a leading zero, then at most two decimal places) or a JSON number \
                 (`19.99`) with at most two decimal places. Another shape is \
                 `422 validation_failed`; another JSON type (`true`, `{{}}`) is \
                 `400 invalid_body`. Answers always render amounts as strings."
            )))
            .build()
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
        let cases: [(&str, Result<&str, ()>); 20] = [
            ("19.99", Ok("19.99")),
            ("5", Ok("5.00")),
            ("0.5", Ok("0.50")),
            ("0", Ok("0.00")),
            ("0.00", Ok("0.00")),
            ("999999999999999.99", Ok("999999999999999.99")),
            ("1.500", Err(())),
            (" 7.10 ", Err(())),
            ("09.90", Err(())),
            ("-0", Err(())),
            ("+1", Err(())),
            ("1e2", Err(())),
            ("1.", Err(())),
            (".5", Err(())),
            ("1,5", Err(())),
            ("1000000000000000", Err(())),
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
        let number = |json: &str| {
            serde_json::from_str::<MoneyInput>(json)
                .unwrap()
                .parse()
                .map(|m| m.to_string())
                .ok()
        };
        assert_eq!(number("1e3").as_deref(), Some("1000.00"));
        assert_eq!(
            number("1.500").as_deref(),
            Some("1.50"),
            "a number's value counts"
        );
        assert_eq!(number("20.0").as_deref(), Some("20.00"));
        assert_eq!(number("19.999"), None);
        assert_eq!(number("-1"), None);
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
