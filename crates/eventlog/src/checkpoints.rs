//! Positions at rest: a subscription's checkpoint row in the subscriber's own schema, moved
//! compare-and-set in the transaction of the subscriber's writes, and the advisory lock
//! that lets one batch of a subscriber run at a time.

use anyhow::Context;
use diesel::OptionalExtension;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::{Position, in_schema};

/// Raw: schema chosen at run time.
const REGISTER: &str = "INSERT INTO {schema}.checkpoints (subscriber, source) VALUES ($1, $2) \
     ON CONFLICT DO NOTHING";

/// Raw: `xid8` read back as a number, in a schema chosen at run time.
const READ: &str = "SELECT xid::text::bigint AS xid, seq, attempts FROM {schema}.checkpoints \
     WHERE subscriber = $1 AND source = $2";

/// Raw: `xid8` compare-and-set, in a schema chosen at run time.
const MOVE: &str = "UPDATE {schema}.checkpoints SET xid = $3::text::xid8, seq = $4, \
     applied = applied + $5, attempts = $6, last_error = $7, updated_at = now() \
     WHERE subscriber = $1 AND source = $2 AND xid = $8::text::xid8 AND seq = $9";

/// Raw: `xid8` and a correlated count of dead letters, in a schema chosen at run time.
const STATUS: &str = "SELECT xid::text::bigint AS xid, seq, applied, attempts, last_error, \
     (SELECT count(*) FROM {schema}.dead_letters d \
      WHERE d.subscriber = c.subscriber AND d.source = c.source) AS dead_letters \
     FROM {schema}.checkpoints c WHERE subscriber = $1 AND source = $2";

/// Raw: an `UPDATE ... FROM` the same table under another alias, in a schema chosen at
/// run time.
const HAND_OVER: &str = "UPDATE {schema}.checkpoints c SET xid = r.xid, seq = r.seq, \
     applied = r.applied, attempts = 0, last_error = NULL, updated_at = now() \
     FROM {schema}.checkpoints r WHERE c.subscriber = $1 AND r.subscriber = $2 \
     AND r.source = c.source";

/// Raw: schema chosen at run time.
const FORGET: &str = "DELETE FROM {schema}.checkpoints WHERE subscriber = $1";

/// Raw: advisory locks are functions. The key of a subscriber (`$1` its schema, `$2` its
/// name): one batch of it at a time, whatever source and process. `$lock` is the locking
/// function, `$more` more of the select list. The rest of the transaction runs on generic
/// plans (a batch's writes take its events as arrays; ARCHITECTURE.md "Generic plans").
macro_rules! subscriber_lock {
    ($lock:literal, $more:literal) => {
        concat!(
            "SELECT ",
            $lock,
            "(hashtextextended('emporium.subscriber.' || $1 || '.' || $2, 0)) AS locked, \
             set_config('plan_cache_mode', 'force_generic_plan', true) AS plan_cache_mode",
            $more
        )
    };
}

/// A checkpoint as the delivery step needs it.
#[derive(diesel::QueryableByName)]
pub(crate) struct Checkpoint {
    #[diesel(sql_type = BigInt)]
    xid: i64,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    /// Failures so far of the event after it.
    #[diesel(sql_type = Integer)]
    pub(crate) attempts: i32,
}

impl Checkpoint {
    pub(crate) fn position(&self) -> Position {
        Position {
            xid: self.xid,
            seq: self.seq,
        }
    }
}

/// A checkpoint as operators see it.
#[derive(diesel::QueryableByName)]
pub(crate) struct CheckpointStatus {
    #[diesel(sql_type = BigInt)]
    xid: i64,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = BigInt)]
    pub(crate) applied: i64,
    #[diesel(sql_type = Integer)]
    pub(crate) attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) last_error: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub(crate) dead_letters: i64,
}

impl CheckpointStatus {
    pub(crate) fn position(&self) -> Position {
        Position {
            xid: self.xid,
            seq: self.seq,
        }
    }
}

/// Where a checkpoint moves in [`advance`], and what it records.
pub(crate) struct Advance {
    pub(crate) from: Position,
    pub(crate) to: Position,
    pub(crate) applied: i64,
    pub(crate) attempts: i32,
    pub(crate) last_error: Option<String>,
}

/// The subscription's two keys: subscriber name, source name.
pub(crate) type Key<'a> = (&'a str, &'a str);

pub(crate) async fn register(
    conn: &mut AsyncPgConnection,
    schema: &str,
    (subscriber, source): Key<'_>,
) -> anyhow::Result<()> {
    diesel::sql_query(in_schema(REGISTER, schema))
        .bind::<Text, _>(subscriber)
        .bind::<Text, _>(source)
        .execute(conn)
        .await
        .context("registering checkpoint")?;
    Ok(())
}

pub(crate) async fn read(
    conn: &mut AsyncPgConnection,
    schema: &str,
    (subscriber, source): Key<'_>,
) -> anyhow::Result<Option<Checkpoint>> {
    kernel::db::prepared(
        diesel::sql_query(in_schema(READ, schema))
            .bind::<Text, _>(subscriber)
            .bind::<Text, _>(source),
    )
    .get_result(conn)
    .await
    .optional()
    .context("reading checkpoint")
}

pub(crate) async fn status(
    conn: &mut AsyncPgConnection,
    schema: &str,
    (subscriber, source): Key<'_>,
) -> anyhow::Result<CheckpointStatus> {
    kernel::db::prepared(
        diesel::sql_query(in_schema(STATUS, schema))
            .bind::<Text, _>(subscriber)
            .bind::<Text, _>(source),
    )
    .get_result(conn)
    .await
    .context("reading checkpoint")
}

/// Moves the checkpoint from `advance.from` to `advance.to`; false if it was not at
/// `advance.from` (someone else moved it).
pub(crate) async fn advance(
    conn: &mut AsyncPgConnection,
    schema: &str,
    (subscriber, source): Key<'_>,
    advance: Advance,
) -> anyhow::Result<bool> {
    let moved = kernel::db::prepared(
        diesel::sql_query(in_schema(MOVE, schema))
            .bind::<Text, _>(subscriber)
            .bind::<Text, _>(source)
            .bind::<BigInt, _>(advance.to.xid)
            .bind::<BigInt, _>(advance.to.seq)
            .bind::<BigInt, _>(advance.applied)
            .bind::<Integer, _>(advance.attempts)
            .bind::<Nullable<Text>, _>(advance.last_error)
            .bind::<BigInt, _>(advance.from.xid)
            .bind::<BigInt, _>(advance.from.seq),
    )
    .execute(conn)
    .await
    .context("moving checkpoint")?;
    Ok(moved == 1)
}

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Takes subscriber `name`'s lock until the transaction on `conn` ends, unless another
/// transaction holds it: then false, at once. `unflushed` (a derived subscriber's step,
/// or one whose events the subscriber all ignores: see `Subscriber::derived` and
/// `Subscriber::ignores`): the same statement turns `synchronous_commit` off for the
/// transaction, no round trip of its own.
pub(crate) async fn try_lock_subscriber(
    conn: &mut AsyncPgConnection,
    schema: &str,
    name: &str,
    unflushed: bool,
) -> anyhow::Result<bool> {
    const TRY_LOCK: &str = subscriber_lock!("pg_try_advisory_xact_lock", "");
    const TRY_LOCK_UNFLUSHED: &str = subscriber_lock!(
        "pg_try_advisory_xact_lock",
        ", set_config('synchronous_commit', 'off', true) AS synchronous_commit"
    );
    let statement = if unflushed {
        TRY_LOCK_UNFLUSHED
    } else {
        TRY_LOCK
    };
    let lock: Locked = kernel::db::prepared(
        diesel::sql_query(statement)
            .bind::<Text, _>(schema)
            .bind::<Text, _>(name),
    )
    .get_result(conn)
    .await
    .context("locking subscriber")?;
    Ok(lock.locked)
}

/// Waits until no batch of subscriber `name` runs, and keeps any from starting until the
/// transaction on `conn` ends.
pub async fn lock_subscriber(
    conn: &mut AsyncPgConnection,
    schema: &str,
    name: &str,
) -> anyhow::Result<()> {
    kernel::db::prepared(
        diesel::sql_query(subscriber_lock!("pg_advisory_xact_lock", ""))
            .bind::<Text, _>(schema)
            .bind::<Text, _>(name),
    )
    .execute(conn)
    .await
    .context("waiting for subscriber lock")?;
    Ok(())
}

/// Checkpoint handover, for a subscriber rebuilt under another name: in the caller's
/// transaction, `to` takes `from`'s position on every source they share, with its attempts
/// cleared, and `from`'s checkpoints are deleted. Hold both subscribers' locks.
pub async fn hand_over_checkpoints(
    conn: &mut AsyncPgConnection,
    schema: &str,
    from: &str,
    to: &str,
) -> anyhow::Result<()> {
    diesel::sql_query(in_schema(HAND_OVER, schema))
        .bind::<Text, _>(to)
        .bind::<Text, _>(from)
        .execute(conn)
        .await
        .with_context(|| format!("handing checkpoints of {from} to {to} in {schema}"))?;
    forget_checkpoints(conn, schema, from).await
}

/// Deletes every checkpoint of `subscriber` (a rebuild that is discarded or handed over).
pub async fn forget_checkpoints(
    conn: &mut AsyncPgConnection,
    schema: &str,
    subscriber: &str,
) -> anyhow::Result<()> {
    diesel::sql_query(in_schema(FORGET, schema))
        .bind::<Text, _>(subscriber)
        .execute(conn)
        .await
        .with_context(|| format!("deleting checkpoints of {subscriber} in {schema}"))?;
    Ok(())
}
