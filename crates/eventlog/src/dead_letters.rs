//! Dead letters: an event that failed [`MAX_ATTEMPTS`](crate::MAX_ATTEMPTS) times is
//! parked in the subscriber's schema so the rest of the log flows; an operator can list
//! them and apply one again ([`Subscription::retry_dead_letter`](crate::Subscription::retry_dead_letter)).

use anyhow::Context;
use chrono::{DateTime, Utc};
use diesel::OptionalExtension;
use diesel::sql_types::{BigInt, Jsonb, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::Envelope;
use kernel::db::{Pool, connect};

use crate::checkpoints::Key;
use crate::in_schema;

/// Raw: schema chosen at run time (likewise every statement below).
const PARK: &str =
    "INSERT INTO {schema}.dead_letters (subscriber, source, event, error) VALUES ($1, $2, $3, $4)";
const LIST: &str =
    "SELECT id, subscriber, source, event, error, parked_at FROM {schema}.dead_letters ORDER BY id";
const TAKE: &str = "SELECT id, subscriber, source, event, error, parked_at FROM {schema}.dead_letters \
     WHERE id = $1 AND subscriber = $2 AND source = $3 FOR UPDATE";
const REMOVE: &str = "DELETE FROM {schema}.dead_letters WHERE id = $1";
const FORGET: &str = "DELETE FROM {schema}.dead_letters WHERE subscriber = $1";
const HAND_OVER: &str = "UPDATE {schema}.dead_letters SET subscriber = $2 WHERE subscriber = $1";

/// A parked event.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct DeadLetter {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub subscriber: String,
    #[diesel(sql_type = Text)]
    pub source: String,
    #[diesel(sql_type = Jsonb)]
    pub event: serde_json::Value,
    #[diesel(sql_type = Text)]
    pub error: String,
    #[diesel(sql_type = Timestamptz)]
    pub parked_at: DateTime<Utc>,
}

/// The dead letters kept in `schema`.
pub async fn dead_letters(pool: &Pool, schema: &str) -> anyhow::Result<Vec<DeadLetter>> {
    diesel::sql_query(in_schema(LIST, schema))
        .load(&mut connect(pool).await?)
        .await
        .context("listing dead letters")
}

pub(crate) async fn park(
    conn: &mut AsyncPgConnection,
    schema: &str,
    (subscriber, source): Key<'_>,
    event: &Envelope,
    error: &str,
) -> anyhow::Result<()> {
    diesel::sql_query(in_schema(PARK, schema))
        .bind::<Text, _>(subscriber)
        .bind::<Text, _>(source)
        .bind::<Jsonb, _>(serde_json::to_value(event)?)
        .bind::<Text, _>(error)
        .execute(conn)
        .await
        .context("parking dead letter")?;
    Ok(())
}

/// Dead letter `id` of this subscription, locked until the transaction ends.
pub(crate) async fn take(
    conn: &mut AsyncPgConnection,
    schema: &str,
    (subscriber, source): Key<'_>,
    id: i64,
) -> anyhow::Result<Option<DeadLetter>> {
    diesel::sql_query(in_schema(TAKE, schema))
        .bind::<BigInt, _>(id)
        .bind::<Text, _>(subscriber)
        .bind::<Text, _>(source)
        .get_result(conn)
        .await
        .optional()
        .context("reading dead letter")
}

pub(crate) async fn remove(
    conn: &mut AsyncPgConnection,
    schema: &str,
    id: i64,
) -> anyhow::Result<()> {
    diesel::sql_query(in_schema(REMOVE, schema))
        .bind::<BigInt, _>(id)
        .execute(conn)
        .await
        .context("removing dead letter")?;
    Ok(())
}

/// Dead-letter handover, beside [`hand_over_checkpoints`](crate::hand_over_checkpoints),
/// for a subscriber rebuilt under another name: in the caller's transaction, `from`'s dead
/// letters become `to`'s, so they are counted in `to`'s status and retried through `to`'s
/// subscription. `to`'s own letters are deleted first: they were parked by what the
/// rebuild replaces, and the rebuild replayed their events from the log (parking again
/// those that failed again). Hold both subscribers' locks.
pub async fn hand_over_dead_letters(
    conn: &mut AsyncPgConnection,
    schema: &str,
    from: &str,
    to: &str,
) -> anyhow::Result<()> {
    forget_dead_letters(conn, schema, to).await?;
    diesel::sql_query(in_schema(HAND_OVER, schema))
        .bind::<Text, _>(from)
        .bind::<Text, _>(to)
        .execute(conn)
        .await
        .with_context(|| format!("handing dead letters of {from} to {to} in {schema}"))?;
    Ok(())
}

/// Deletes every dead letter of `subscriber` (a rebuild that is discarded).
pub async fn forget_dead_letters(
    conn: &mut AsyncPgConnection,
    schema: &str,
    subscriber: &str,
) -> anyhow::Result<()> {
    diesel::sql_query(in_schema(FORGET, schema))
        .bind::<Text, _>(subscriber)
        .execute(conn)
        .await
        .with_context(|| format!("deleting dead letters of {subscriber} in {schema}"))?;
    Ok(())
}
