//! Reading a log below the watermark: positions, [`LoggedEvent`], and [`EventSource`], the
//! one view of a log that subscriptions use.

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::db::{Pool, connect};
use kernel::{Actor, Envelope};
use uuid::Uuid;

use crate::in_schema;

/// A place in one event log: the `(xid, seq)` of an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub xid: i64,
    pub seq: i64,
}

/// An event as read back from its log, with its place in it.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub position: Position,
    pub envelope: Envelope,
}

/// Raw: `xid8` and `pg_snapshot_xmin` (the watermark) have no diesel DSL, and the schema is
/// the source's, chosen at run time. The order names the table's columns (`events.xid`): a
/// bare `xid` would be the output column, the `bigint` made of it, which no index has, so
/// every read would sort the whole log. The payload comes as text, kept as it is
/// ([`Envelope::payload`]).
const READ_BELOW_WATERMARK: &str = "SELECT xid::text::bigint AS xid, seq, event_id, event_type, \
     aggregate_id, aggregate_version, occurred_at, schema_version, actor_kind, actor_id, \
     correlation_id, payload::text AS payload FROM {schema}.events \
     WHERE (xid, seq) > ($1::text::xid8, $2) AND xid < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY events.xid, events.seq LIMIT $3";

/// Raw: `xid8` comparisons, in a schema chosen at run time.
/// The events after a position, counted on the primary key's range (so the cost is the
/// backlog's, at most [`BACKLOG_CAP`], never the log's), and the first of them.
const BACKLOG: &str = "SELECT \
     (SELECT count(*) FROM (SELECT 1 FROM {schema}.events \
        WHERE (xid, seq) > ($1::text::xid8, $2) ORDER BY xid, seq LIMIT $3) AS after) AS events, \
     (SELECT occurred_at FROM {schema}.events \
        WHERE (xid, seq) > ($1::text::xid8, $2) ORDER BY xid, seq LIMIT 1) AS oldest";

/// The statement [`PgEventSource::backlog`] runs on `schema`'s log (binds: the position's
/// xid and seq, then [`BACKLOG_CAP`]); public so that its plan can be checked.
pub fn backlog_statement(schema: &str) -> String {
    in_schema(BACKLOG, schema)
}

/// The most events a backlog counts: a larger one reads as this many.
pub const BACKLOG_CAP: i64 = 1_000_000;

#[derive(diesel::QueryableByName)]
struct EventRow {
    #[diesel(sql_type = BigInt)]
    xid: i64,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = SqlUuid)]
    event_id: Uuid,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = SqlUuid)]
    aggregate_id: Uuid,
    #[diesel(sql_type = BigInt)]
    aggregate_version: i64,
    #[diesel(sql_type = Timestamptz)]
    occurred_at: DateTime<Utc>,
    #[diesel(sql_type = Integer)]
    schema_version: i32,
    #[diesel(sql_type = Text)]
    actor_kind: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    actor_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    correlation_id: Option<String>,
    #[diesel(sql_type = Text)]
    payload: String,
}

/// Reads up to `limit` events after `after`, only below the watermark, in log order.
pub(crate) async fn read(
    conn: &mut AsyncPgConnection,
    schema: &str,
    after: Position,
    limit: i64,
) -> anyhow::Result<Vec<LoggedEvent>> {
    let rows: Vec<EventRow> = kernel::db::prepared(
        diesel::sql_query(in_schema(READ_BELOW_WATERMARK, schema))
            .bind::<BigInt, _>(after.xid)
            .bind::<BigInt, _>(after.seq)
            .bind::<BigInt, _>(limit),
    )
    .load(conn)
    .await
    .with_context(|| format!("reading {schema}.events"))?;
    rows.into_iter()
        .map(|r| {
            let kind = r.actor_kind.parse().map_err(anyhow::Error::msg)?;
            Ok(LoggedEvent {
                position: Position {
                    xid: r.xid,
                    seq: r.seq,
                },
                envelope: Envelope {
                    event_id: r.event_id,
                    event_type: r.event_type,
                    aggregate_id: r.aggregate_id,
                    aggregate_version: r.aggregate_version,
                    occurred_at: r.occurred_at,
                    schema_version: r.schema_version,
                    actor: Actor {
                        kind,
                        id: r.actor_id,
                    },
                    correlation_id: r.correlation_id,
                    payload: serde_json::value::RawValue::from_string(r.payload)
                        .context("an event's payload")?,
                },
            })
        })
        .collect()
}

/// One module's event log, read through that module's own pool.
#[async_trait]
pub trait EventSource: Send + Sync {
    /// The source's name: its schema.
    fn name(&self) -> &'static str;
    /// Up to `limit` events after `after`, below the watermark, in log order.
    async fn read(&self, after: Position, limit: i64) -> anyhow::Result<Vec<LoggedEvent>>;
    /// What lies after `after`: how many events, and when the oldest of them happened.
    async fn backlog(&self, after: Position) -> anyhow::Result<Backlog>;
}

/// What a subscription has yet to apply from one source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Events after the position (at most [`BACKLOG_CAP`]).
    pub events: i64,
    /// When the first of them (in log order) happened.
    pub oldest: Option<DateTime<Utc>>,
}

/// The event log of `schema`, read with `pool` (that module's own role).
#[derive(Clone)]
pub struct PgEventSource {
    pub schema: &'static str,
    pub pool: Pool,
}

#[async_trait]
impl EventSource for PgEventSource {
    fn name(&self) -> &'static str {
        self.schema
    }

    async fn read(&self, after: Position, limit: i64) -> anyhow::Result<Vec<LoggedEvent>> {
        let mut conn = connect(&self.pool).await?;
        read(&mut conn, self.schema, after, limit).await
    }

    async fn backlog(&self, after: Position) -> anyhow::Result<Backlog> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = BigInt)]
            events: i64,
            #[diesel(sql_type = Nullable<Timestamptz>)]
            oldest: Option<DateTime<Utc>>,
        }
        let row: Row = kernel::db::prepared(
            diesel::sql_query(backlog_statement(self.schema))
                .bind::<BigInt, _>(after.xid)
                .bind::<BigInt, _>(after.seq)
                .bind::<BigInt, _>(BACKLOG_CAP),
        )
        .get_result(&mut connect(&self.pool).await?)
        .await
        .context("measuring backlog")?;
        Ok(Backlog {
            events: row.events,
            oldest: row.oldest,
        })
    }
}
