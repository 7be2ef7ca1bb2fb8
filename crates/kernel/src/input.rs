//! The shapes of request fields every module shares, each stated twice from one place: as
//! the check the server runs and as the JSON Schema (`pattern`, lengths, bounds) the
//! OpenAPI document declares for it, so that a client or a fuzzer driven by the document
//! and the server agree on every value (`apps/emporium/tests/it/openapi/` holds them to it
//! through HTTP).
//!
//! - [`line`]: a one-line text (a name, a reason) of `1..=max` characters after trimming
//!   Unicode whitespace (what `str::trim` removes), with no control character.
//! - [`text`]: a free text (a description) of at most `max` characters, with no control
//!   character but tab, line feed and carriage return.
//! - [`visible_ascii`]: `1..=max` visible ASCII characters (`!` to `~`), nothing trimmed
//!   (a key, a token).
//! - [`integer`]: a JSON integer, also written as an integral number (`5.0`): JSON Schema's
//!   `integer` is a value, not a spelling, so a document that says `integer` allows both.

use serde::Deserializer;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

/// The characters `str::trim` removes (Unicode `White_Space`), as a regex class.
pub const WHITESPACE: &str =
    r"[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";

/// What [`line`] keeps apart from whitespace at either end: not a control character
/// (Unicode `Cc`: `char::is_control`).
const NOT_CONTROL: &str = r"[^\u0000-\u001F\u007F-\u009F]";
/// Neither whitespace nor a control character: a trimmed line's first and last.
const EDGE: &str = r"[^\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000-\u001F\u007F-\u009F]";

/// A one-line text: `raw` trimmed, `1..=max` characters, no control character.
pub fn line(raw: &str, max: usize) -> Result<String, String> {
    let line = raw.trim();
    let chars = line.chars().count();
    if chars == 0 || chars > max {
        return Err(format!(
            "must be 1 to {max} characters after trimming, got {chars}"
        ));
    }
    if line.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(line.to_owned())
}

/// The pattern of [`line`]: whitespace, then one character that is neither whitespace nor
/// control, or two with up to `max - 2` non-control characters between, then whitespace.
pub fn line_pattern(max: usize) -> String {
    let between = max.saturating_sub(2);
    format!("^{WHITESPACE}*(?:{EDGE}|{EDGE}{NOT_CONTROL}{{0,{between}}}{EDGE}){WHITESPACE}*$")
}

/// The schema of [`line`], described.
pub fn line_schema(max: usize, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .pattern(Some(line_pattern(max)))
        .description(Some(format!(
            "{description} 1 to {max} characters after trimming whitespace at either end; \
             no control characters."
        )))
}

/// `schema` (of a string) allowing `null` too: a field of a PATCH, where `null` leaves it as
/// it is.
pub fn or_null(schema: ObjectBuilder) -> Object {
    schema
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .build()
}

/// A free text: at most `max` characters, no control character but `\t`, `\n`, `\r`.
pub fn text(raw: &str, max: usize) -> Result<String, String> {
    let chars = raw.chars().count();
    if chars > max {
        return Err(format!("must be at most {max} characters, got {chars}"));
    }
    if raw
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(
            "must not contain control characters other than tab and line breaks".to_owned(),
        );
    }
    Ok(raw.to_owned())
}

/// The schema of [`text`], described.
pub fn text_schema(max: usize, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(max))
        .pattern(Some(
            r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$",
        ))
        .description(Some(format!(
            "{description} At most {max} characters; no control characters other than tab, \
             line feed and carriage return."
        )))
}

/// `1..=max` visible ASCII characters (`!` to `~`), taken as they are.
pub fn visible_ascii(raw: &str, max: usize) -> Result<&str, String> {
    if raw.is_empty() || raw.len() > max || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "must be 1 to {max} visible ASCII characters (no spaces), got {} characters",
            raw.chars().count()
        ));
    }
    Ok(raw)
}

/// The pattern of [`visible_ascii`].
pub fn visible_ascii_pattern(max: usize) -> String {
    format!("^[!-~]{{1,{max}}}$")
}

/// Deserializes an optional JSON integer, accepting an integral number written with a
/// fraction or an exponent (`5.0`, `5e3`) as the integer it is; `5.5` is a type error.
/// Use as `#[serde(default, deserialize_with = "kernel::input::integer")]`.
pub fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<i64>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_some<S: Deserializer<'de>>(self, d: S) -> Result<Option<i64>, S::Error> {
            d.deserialize_any(Visitor)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Option<i64>, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Option<i64>, E> {
            // Beyond i64 is beyond every bound a field has: the bound's message says so.
            Ok(Some(i64::try_from(v).unwrap_or(i64::MAX)))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Option<i64>, E> {
            if v.fract() != 0.0 || !v.is_finite() {
                return Err(E::invalid_type(serde::de::Unexpected::Float(v), &self));
            }
            // Saturates beyond i64, as above.
            Ok(Some(v as i64))
        }
    }
    deserializer.deserialize_option(Visitor)
}

/// For `Deserialize` of a type with an [`integer`] field: the field's own type.
pub type Integer = Option<i64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_trimmed_bounded_and_without_controls() {
        let cases: [(&str, Result<&str, ()>); 8] = [
            ("Mug", Ok("Mug")),
            ("  Mug \t", Ok("Mug")),
            ("\u{3000}Mug\u{a0}", Ok("Mug")),
            ("a b", Ok("a b")),
            ("", Err(())),
            (" \t ", Err(())),
            ("a\u{0}b", Err(())),
            ("a\u{89}", Err(())),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                line(raw, 5).map_err(|_| ()),
                expected.map(str::to_owned),
                "{raw:?}"
            );
        }
        assert!(line("abcdef", 5).is_err());
        assert!(line(" abcde ", 5).is_ok());
    }

    #[test]
    fn visible_ascii_is_exact() {
        assert!(visible_ascii("abc-123_~", 10).is_ok());
        for raw in ["", "a b", " a", "é", "a\t", "abcdefghijk"] {
            assert!(visible_ascii(raw, 10).is_err(), "{raw:?}");
        }
    }

    use serde::Deserialize;

    #[test]
    fn integers_may_be_written_as_integral_numbers() {
        #[derive(Deserialize)]
        struct Body {
            #[serde(default, deserialize_with = "integer")]
            n: Integer,
        }
        let n = |json: &str| serde_json::from_str::<Body>(json).map(|b| b.n).ok();
        assert_eq!(n(r#"{"n": 5}"#), Some(Some(5)));
        assert_eq!(n(r#"{"n": 5.0}"#), Some(Some(5)));
        assert_eq!(n(r#"{"n": 5e3}"#), Some(Some(5000)));
        assert_eq!(n(r#"{"n": -2.0}"#), Some(Some(-2)));
        assert_eq!(n(r#"{"n": null}"#), Some(None));
        assert_eq!(n(r#"{}"#), Some(None));
        assert_eq!(n(r#"{"n": 5.5}"#), None);
        assert_eq!(n(r#"{"n": "5"}"#), None);
    }
}
