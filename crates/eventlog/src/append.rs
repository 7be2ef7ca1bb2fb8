//! The outbox write: events go into the writer's own log on the writer's connection, so
//! they commit or roll back with the state change they describe.

use anyhow::Context;
use chrono::Utc;
use diesel::sql_types::{BigInt, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::{Envelope, NewEvent};
use uuid::Uuid;

use crate::{CHANNEL, in_schema};

/// Raw: the log's schema is the writer's, chosen at run time.
const INSERT_EVENT: &str = "INSERT INTO {schema}.events (event_id, event_type, aggregate_id, \
     aggregate_version, occurred_at, schema_version, actor_kind, actor_id, correlation_id, payload) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Raw: `pg_notify` is a function call; delivered when the transaction commits.
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// Appends `events` to `<schema>.events` on `conn`, inside the caller's transaction, and
/// notifies [`CHANNEL`] (on commit). Each carries the actor and correlation id of the
/// running work (`kernel::context`). Returns the envelopes written.
pub async fn append(
    conn: &mut AsyncPgConnection,
    schema: &str,
    events: &[NewEvent],
) -> anyhow::Result<Vec<Envelope>> {
    let now = Utc::now();
    let (actor, correlation_id) = kernel::context::current();
    let insert = in_schema(INSERT_EVENT, schema);
    let mut written = Vec::with_capacity(events.len());
    for event in events {
        let envelope = Envelope {
            event_id: Uuid::now_v7(),
            event_type: event.event_type.to_owned(),
            aggregate_id: event.aggregate_id,
            aggregate_version: event.aggregate_version,
            occurred_at: now,
            schema_version: 1,
            actor,
            correlation_id: correlation_id.clone(),
            payload: event.payload.clone(),
        };
        kernel::db::prepared(
            diesel::sql_query(&insert)
                .bind::<SqlUuid, _>(envelope.event_id)
                .bind::<Text, _>(&envelope.event_type)
                .bind::<SqlUuid, _>(envelope.aggregate_id)
                .bind::<BigInt, _>(envelope.aggregate_version)
                .bind::<Timestamptz, _>(envelope.occurred_at)
                .bind::<Integer, _>(envelope.schema_version)
                .bind::<Text, _>(envelope.actor.kind.as_str())
                .bind::<Nullable<SqlUuid>, _>(envelope.actor.id)
                .bind::<Nullable<Text>, _>(&envelope.correlation_id)
                .bind::<Jsonb, _>(&envelope.payload),
        )
        .execute(conn)
        .await
        .with_context(|| format!("appending {} to {schema}.events", envelope.event_type))?;
        written.push(envelope);
    }
    if !written.is_empty() {
        kernel::db::prepared(
            diesel::sql_query(NOTIFY)
                .bind::<Text, _>(CHANNEL)
                .bind::<Text, _>(schema),
        )
        .execute(conn)
        .await
        .context("notifying event subscribers")?;
    }
    Ok(written)
}
