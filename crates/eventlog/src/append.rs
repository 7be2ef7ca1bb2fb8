//! The outbox write: events go into the writer's own log on the writer's connection, so
//! they commit or roll back with the state change they describe.

use anyhow::Context;
use chrono::Utc;
use diesel::sql_types::{
    Array, BigInt, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::{Envelope, NewEvent};
use uuid::Uuid;

use crate::{CHANNEL, in_schema};

/// Raw: the log's schema is the writer's, chosen at run time. Every event of the call in
/// one statement, one round trip: the rows go in in the order given (`ORDER BY` the
/// arrays' ordinality, so `seq` follows it).
const APPEND: &str = "INSERT INTO {schema}.events (event_id, event_type, aggregate_id, aggregate_version, \
         occurred_at, schema_version, actor_kind, actor_id, correlation_id, payload) \
       SELECT e.event_id, e.event_type, e.aggregate_id, e.aggregate_version, e.occurred_at, \
         e.schema_version, e.actor_kind, e.actor_id, e.correlation_id, e.payload \
       FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::bigint[], $5::timestamptz[], \
         $6::int[], $7::text[], $8::uuid[], $9::text[], $10::jsonb[]) WITH ORDINALITY \
         AS e(event_id, event_type, aggregate_id, aggregate_version, occurred_at, schema_version, \
           actor_kind, actor_id, correlation_id, payload, n) \
       ORDER BY e.n";

/// Appends `events` to `<schema>.events` on `conn`, inside the caller's transaction, and
/// [`signal`](crate::signal)s [`CHANNEL`] (once it commits). Each carries the actor and correlation id of the
/// running work (`kernel::context`). Returns the envelopes written.
pub async fn append(
    conn: &mut AsyncPgConnection,
    schema: &str,
    events: &[NewEvent],
) -> anyhow::Result<Vec<Envelope>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let now = Utc::now();
    let (actor, correlation_id) = kernel::context::current();
    let written: Vec<Envelope> = events
        .iter()
        .map(|event| Envelope {
            event_id: Uuid::now_v7(),
            event_type: event.event_type.to_owned(),
            aggregate_id: event.aggregate_id,
            aggregate_version: event.aggregate_version,
            occurred_at: now,
            schema_version: event.schema_version,
            actor,
            correlation_id: correlation_id.clone(),
            payload: Envelope::raw_payload(&event.payload),
        })
        .collect();
    kernel::db::prepared(
        diesel::sql_query(in_schema(APPEND, schema))
            .bind::<Array<SqlUuid>, _>(written.iter().map(|e| e.event_id).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(
                written
                    .iter()
                    .map(|e| e.event_type.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<SqlUuid>, _>(written.iter().map(|e| e.aggregate_id).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(
                written
                    .iter()
                    .map(|e| e.aggregate_version)
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Timestamptz>, _>(
                written.iter().map(|e| e.occurred_at).collect::<Vec<_>>(),
            )
            .bind::<Array<Integer>, _>(written.iter().map(|e| e.schema_version).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(
                written
                    .iter()
                    .map(|e| e.actor.kind.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<SqlUuid>>, _>(
                written.iter().map(|e| e.actor.id).collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Text>>, _>(
                written
                    .iter()
                    .map(|e| e.correlation_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Jsonb>, _>(events.iter().map(|e| &e.payload).collect::<Vec<_>>()),
    )
    .execute(conn)
    .await
    .with_context(|| {
        let types: Vec<&str> = written.iter().map(|e| e.event_type.as_str()).collect();
        format!("appending {} to {schema}.events", types.join(", "))
    })?;
    crate::signal(CHANNEL);
    Ok(written)
}
