//! Deleting retired generations: the one a rebuild replaced, or an abandoned rebuild's.
//!
//! A generation can hold millions of rows, and one transaction deleting them all would
//! hold a transaction id for as long as it ran, holding back the event-log watermark of
//! every reader in the cluster (`eventlog`'s `read.rs`). So a generation is deleted a
//! batch of at most [`BATCH`] rows per statement, each statement its own transaction, in
//! key order; its `generations` row goes last, and only once no row of it is left. Each
//! step is idempotent and the state is in the database, so a deletion cut short (a crash,
//! a lost connection) is finished by whoever looks next: the rebuild that retired it, the
//! next rebuild, or any process's cleaner ([`spawn`]), which looks at start and then every
//! [`CLEANUP_EVERY`]. Two deleting at once only contend for rows, and each skips what the
//! other deleted.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::db::{self, DbContext, Pool};

use crate::schema::{generations, orders, products, users};
use crate::states::GenerationState;

/// Rows per deleting statement (orders take their items with them: at most
/// `orders_api::MAX_ITEMS` each, one to three usually).
pub(crate) const BATCH: i64 = 1000;
/// How often a process's cleaner looks for retired generations.
pub const CLEANUP_EVERY: Duration = Duration::from_secs(60);

/// Deletes every retired generation, in bounded transactions.
pub(crate) async fn delete_retired(pool: &Pool) -> anyhow::Result<()> {
    let mut conn = db::connect(pool).await?;
    let retired: Vec<i32> = generations::table
        .filter(generations::state.eq(GenerationState::Retired))
        .select(generations::id)
        .order(generations::id)
        .load(&mut conn)
        .await
        .db_context("listing retired generations")?;
    for generation in retired {
        delete_generation(&mut conn, generation).await?;
    }
    Ok(())
}

/// Deletes one retired generation: its rows a batch at a time, then its row.
async fn delete_generation(conn: &mut AsyncPgConnection, generation: i32) -> anyhow::Result<()> {
    let mut deleted = 0;
    loop {
        let batch = delete_orders(conn, generation).await?;
        deleted += batch;
        if batch == 0 {
            break;
        }
    }
    loop {
        let batch =
            delete_users(conn, generation).await? + delete_products(conn, generation).await?;
        deleted += batch;
        if batch == 0 {
            break;
        }
    }
    let gone = diesel::delete(
        generations::table
            .find(generation)
            .filter(generations::state.eq(GenerationState::Retired))
            .filter(diesel::dsl::not(diesel::dsl::exists(
                orders::table.filter(orders::generation.eq(generation)),
            )))
            .filter(diesel::dsl::not(diesel::dsl::exists(
                users::table.filter(users::generation.eq(generation)),
            )))
            .filter(diesel::dsl::not(diesel::dsl::exists(
                products::table.filter(products::generation.eq(generation)),
            ))),
    )
    .execute(conn)
    .await
    .db_context("deleting a retired generation")?;
    if gone == 1 {
        tracing::info!(generation, rows = deleted, "retired generation deleted");
    } else {
        // Written to meanwhile (by a rebuild that did not know it was taken over): the
        // next look deletes the rest.
        tracing::warn!(
            generation,
            "retired generation still has rows; deleting them later"
        );
    }
    Ok(())
}

/// Deletes the next [`BATCH`] rows of `generation` in `$table`, in key order (listed
/// first, then deleted by key: one statement, so one short transaction, each); how many.
macro_rules! delete_batch {
    ($conn:expr, $table:ident, $generation:expr, $what:literal) => {{
        let next: Vec<uuid::Uuid> = $table::table
            .filter($table::generation.eq($generation))
            .order($table::id)
            .select($table::id)
            .limit(BATCH)
            .load($conn)
            .await
            .db_context(concat!("listing a retired generation's ", $what))?;
        if next.is_empty() {
            0
        } else {
            diesel::delete(
                $table::table
                    .filter($table::generation.eq($generation))
                    .filter($table::id.eq_any(&next)),
            )
            .execute($conn)
            .await
            .db_context(concat!("deleting a retired generation's ", $what))?
        }
    }};
}

/// The next orders of `generation`, with their items (cascade).
async fn delete_orders(conn: &mut AsyncPgConnection, generation: i32) -> anyhow::Result<usize> {
    Ok(delete_batch!(conn, orders, generation, "orders"))
}

async fn delete_users(conn: &mut AsyncPgConnection, generation: i32) -> anyhow::Result<usize> {
    Ok(delete_batch!(conn, users, generation, "users"))
}

async fn delete_products(conn: &mut AsyncPgConnection, generation: i32) -> anyhow::Result<usize> {
    Ok(delete_batch!(conn, products, generation, "products"))
}

/// A process's cleaner: [`delete_retired`] now and every [`CLEANUP_EVERY`]; logs and
/// carries on after a failure.
pub(crate) fn spawn(pool: Pool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(error) = delete_retired(&pool).await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "deleting retired read-model generations failed; trying again later"
                );
            }
            tokio::time::sleep(CLEANUP_EVERY).await;
        }
    })
}
