//! The one way a state is stored: as `text`, through the type's `as_str()` out and its
//! `FromStr` in, so its spelling lives in one place. A module derives
//! `AsExpression, FromSqlRow` with `#[diesel(sql_type = Text)]` on the type (or on a
//! newtype around an `-api` enum, which knows no diesel) and implements `ToSql`/`FromSql`
//! with these two functions.

use std::str::FromStr;

use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;

/// `ToSql<Text, Pg>` of a state: its `as_str()`.
pub fn to_text(text: &'static str, out: &mut Output<'_, '_, Pg>) -> serialize::Result {
    <str as ToSql<Text, Pg>>::to_sql(text, &mut out.reborrow())
}

/// `FromSql<Text, Pg>` of a state: its `FromStr`; unknown text is an error, never a default.
pub fn from_text<T>(bytes: PgValue<'_>) -> deserialize::Result<T>
where
    T: FromStr,
    T::Err: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let text = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
    text.parse::<T>().map_err(Into::into)
}
