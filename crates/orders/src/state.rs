//! Where an order stands in the write model, as a type stored as text through one diesel
//! mapping: [`State::as_str`] and its `FromStr` are its only spelling (besides the
//! migration's `CHECK`; a visible status is spelled by `orders_api::OrderStatus`).

use std::str::FromStr;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use kernel::db::text::{from_text, to_text};
use orders_api::OrderStatus;

/// `orders.orders.status`: the visible statuses, and the internal states of placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub(crate) enum State {
    /// Recorded, stock not yet reserved. Invisible to commands and queries.
    Placing,
    Visible(OrderStatus),
    /// Placement interrupted; its reservation is being released.
    Abandoned,
    /// Placement failed (no stock, unknown product) or was abandoned and released.
    Rejected,
}

impl State {
    pub(crate) const PENDING: State = State::Visible(OrderStatus::Pending);

    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            State::Placing => "placing",
            State::Visible(status) => status.as_str(),
            State::Abandoned => "abandoned",
            State::Rejected => "rejected",
        }
    }
}

impl FromStr for State {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<State> {
        Ok(match text {
            "placing" => State::Placing,
            "abandoned" => State::Abandoned,
            "rejected" => State::Rejected,
            other => State::Visible(
                other
                    .parse()
                    .map_err(|_| anyhow::anyhow!("unknown order status {other:?} stored"))?,
            ),
        })
    }
}

impl ToSql<Text, Pg> for State {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        to_text(self.as_str(), out)
    }
}

impl FromSql<Text, Pg> for State {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        from_text(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        let all = OrderStatus::ALL.map(State::Visible).into_iter().chain([
            State::Placing,
            State::Abandoned,
            State::Rejected,
        ]);
        for state in all {
            assert_eq!(state.as_str().parse::<State>().unwrap(), state);
        }
        assert!("lost".parse::<State>().is_err());
    }
}
