//! Where an order stands in the write model, as a type stored as text through one diesel
//! mapping: `orders_api::OrderStatus` spells it, [`State`] stores it (besides the
//! migration's `CHECK`).

use std::str::FromStr;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use kernel::db::text::{from_text, to_text};
use orders_api::OrderStatus;

/// `orders.orders.status`: an order's status as its row stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub(crate) struct State(pub(crate) OrderStatus);

impl State {
    pub(crate) const PENDING: State = State(OrderStatus::Pending);

    pub(crate) fn as_str(&self) -> &'static str {
        self.0.as_str()
    }
}

impl FromStr for State {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<State> {
        text.parse()
            .map(State)
            .map_err(|_| anyhow::anyhow!("unknown order status {text:?} stored"))
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
        for state in OrderStatus::ALL.map(State) {
            assert_eq!(state.as_str().parse::<State>().unwrap(), state);
        }
        assert!("lost".parse::<State>().is_err());
        assert!("placing".parse::<State>().is_err());
    }
}
