//! The read model's states as types, stored as text through one diesel mapping: each
//! type's `as_str`/`FromStr` is its only spelling (besides the migrations' `CHECK`s).

use std::str::FromStr;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use kernel::db::text::{from_text, to_text};
use orders_api::OrderStatus;

/// Where a generation of the read model stands (see `rebuild.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub(crate) enum GenerationState {
    /// The one generation queries and the live projection use.
    Live,
    /// Being filled by a rebuild.
    Building,
    /// Replaced by a rebuilt one; its rows are being deleted.
    Retired,
}

impl GenerationState {
    pub(crate) const ALL: [GenerationState; 3] = [
        GenerationState::Live,
        GenerationState::Building,
        GenerationState::Retired,
    ];

    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            GenerationState::Live => "live",
            GenerationState::Building => "building",
            GenerationState::Retired => "retired",
        }
    }
}

/// Text that names no [`GenerationState`].
#[derive(Debug, thiserror::Error)]
#[error("unknown generation state {0:?} stored")]
pub(crate) struct UnknownGenerationState(String);

impl FromStr for GenerationState {
    type Err = UnknownGenerationState;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        GenerationState::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| UnknownGenerationState(text.to_owned()))
    }
}

/// An [`OrderStatus`] as the read model stores it (the `-api` type knows no diesel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub(crate) struct StoredStatus(pub(crate) OrderStatus);

impl ToSql<Text, Pg> for GenerationState {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        to_text(self.as_str(), out)
    }
}

impl FromSql<Text, Pg> for GenerationState {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        from_text(bytes)
    }
}

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
    fn states_round_trip() {
        for state in GenerationState::ALL {
            assert_eq!(state.as_str().parse::<GenerationState>().unwrap(), state);
        }
        assert!("lost".parse::<GenerationState>().is_err());
    }
}
