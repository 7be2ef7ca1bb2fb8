//! Raw SQL that is parsed and planned once per connection, like diesel's own queries.
//!
//! Diesel keeps the queries of its query builder in each connection's prepared-statement
//! cache, but never a raw `diesel::sql_query`: it cannot know whether the text was built
//! at run time, and a cache keyed by ever-new texts would grow without bound. The raw
//! statements of the hot paths (the event log's append and reads, the projection's batch
//! writes, the placement's stock updates) are constants, so [`prepared`] tells diesel so:
//! the statement is cached by its text and its bind types, prepared on the first call and
//! only bound and executed after that.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;

/// A raw query kept in the prepared-statement cache by its text (see the module docs).
#[derive(Debug, Clone)]
pub struct Prepared<Q>(Q);

/// `query` (a `diesel::sql_query(CONST).bind(..)...`) cached by its text. Only for a text
/// that is a constant, or one of a fixed few (a constant per module schema, as the event
/// log's): every distinct text stays prepared on every connection that ran it.
pub fn prepared<Q>(query: Q) -> Prepared<Q> {
    Prepared(query)
}

impl<Q> QueryId for Prepared<Q> {
    // No static id: the cache key is the text (and the bind types), as for boxed queries.
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}
