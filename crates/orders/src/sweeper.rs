//! The sweeper: cancels pending orders that outlived `ORDER_EXPIRY` (reason `expired`,
//! which releases their stock through the usual cancellation) and deletes idempotency
//! keys past `IDEMPOTENCY_TTL`. Every process runs one; the row locks and version checks
//! of the commands make concurrent sweepers harmless. (A placement needs no sweeping: it
//! is one transaction, see `placement.rs`.)
//!
//! A listing is only a hint: an order listed as expired may be confirmed before the sweep
//! gets to it, and confirmed -> cancelled is a legal transition. So expiry cancels an order
//! only if, under its row lock, it is still pending, still at the version listed, still
//! past its due time and not being paid (no confirm's fence on it); anything else is left
//! alone. An order whose payment is still `pending` (its confirm answered `504` or
//! crashed) is not expired either, until the payments module has settled that payment.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use kernel::OrderId;
use kernel::db::{self, DbContext};
use orders_api::{Accepted, OrderError};
use payments_api::PaymentStatus;
use uuid::Uuid;

use crate::Settings;
use crate::commands::OrderCommandHandler;
use crate::domain::Reason;
use crate::schema::orders;
use crate::state::State;
use crate::store::{accepted, load_for_update, save};

/// Most orders of each kind one listing holds.
const SWEEP_LIMIT: i64 = 100;
/// Most listings of expired orders one sweep works through.
const SWEEP_PAGES: usize = 10;

/// A pending order the listing found past its due time, at the version it had then.
struct Expired {
    id: OrderId,
    version: i64,
    created_at: DateTime<Utc>,
}

/// The orders a sweep has work for.
struct Due {
    /// Pending orders created before `expired_before`.
    expired: Vec<Expired>,
    /// The due time of the listing, checked again when each order is cancelled.
    expired_before: DateTime<Utc>,
}

pub(crate) async fn run(handler: OrderCommandHandler, settings: Settings) {
    loop {
        if let Err(error) = sweep(&handler, &settings).await {
            tracing::warn!(error = format!("{error:#}"), "order sweep failed; retrying");
        }
        tokio::time::sleep(settings.sweep_every).await;
    }
}

/// Idempotency keys deleted per statement, and statements per sweep.
const KEY_BATCH: i64 = 1000;
const KEY_BATCHES: usize = 10;

/// Deletes idempotency keys older than the TTL (a lookup already ignores them), a bounded
/// batch per statement and a bounded number of batches per sweep; answers how many.
pub(crate) async fn forget_keys(handler: &OrderCommandHandler) -> anyhow::Result<usize> {
    let cutoff = Utc::now() - crate::placement::ttl(handler.idempotency_ttl);
    let mut conn = db::connect(&handler.pool).await?;
    db::delete_older(
        &mut conn,
        ("orders.idempotency_keys", "key", "created_at"),
        cutoff,
        KEY_BATCH,
        KEY_BATCHES,
    )
    .await
}

pub(crate) async fn sweep(
    handler: &OrderCommandHandler,
    settings: &Settings,
) -> anyhow::Result<()> {
    let due = due(handler, settings.order_expiry).await?;
    // Orders left alone (a payment still pending) stay due, so the listing goes on past
    // them page by page: a crowd of them never hides the orders behind it.
    let mut page = due.expired;
    for _ in 0..SWEEP_PAGES {
        let Some(last) = page.last().map(|o| (o.created_at, o.id)) else {
            break;
        };
        let full = page.len() as i64 == SWEEP_LIMIT;
        for listed in page {
            expire_listed(handler, listed, due.expired_before).await?;
        }
        if !full {
            break;
        }
        page = expired_after(handler, due.expired_before, Some(last)).await?;
    }
    let forgotten = forget_keys(handler).await?;
    if forgotten > 0 {
        tracing::info!(forgotten, "expired idempotency keys deleted");
    }
    Ok(())
}

/// Expires one listed order, unless its payment is pending or it moved on meanwhile.
async fn expire_listed(
    handler: &OrderCommandHandler,
    listed: Expired,
    expired_before: DateTime<Utc>,
) -> anyhow::Result<()> {
    handler.fault("before_expire")?;
    let id = listed.id;
    if payment_pending(handler, id).await? {
        tracing::debug!(order_id = %id, "expiry waits for the order's pending payment");
        return Ok(());
    }
    match expire(handler, listed, expired_before)
        .await
        .context("cancelling an expired order")?
    {
        Some(_) => tracing::info!(order_id = %id, "expired pending order cancelled"),
        // Confirmed or cancelled meanwhile, by a request or another process.
        None => tracing::debug!(order_id = %id, "listed order no longer expired"),
    }
    Ok(())
}

/// Cancels a listed order as `expired` if, under its row lock, it is still pending at the
/// version listed and still created before `expired_before`; `None` (and nothing done)
/// otherwise. A cancelled order's stock is then given back as after any cancellation
/// (`compensate`; the saga does it again from `order.cancelled`).
async fn expire(
    handler: &OrderCommandHandler,
    listed: Expired,
    expired_before: DateTime<Utc>,
) -> anyhow::Result<Option<Accepted>> {
    let Expired { id, version, .. } = listed;
    let mut conn = db::connect(&handler.pool).await?;
    let cancelled = db::transaction(&mut conn, async |conn| {
        let still_due: Option<Uuid> = orders::table
            .find(id.as_uuid())
            .filter(orders::status.eq(State::PENDING))
            .filter(orders::version.eq(version))
            .filter(orders::created_at.lt(expired_before))
            .filter(not_being_paid(Utc::now()))
            .select(orders::id)
            .for_update()
            .first(conn)
            .await
            .optional()
            .db_context("locking an expired order")?;
        if still_due.is_none() {
            return Ok(None);
        }
        let mut order = load_for_update(conn, id).await?;
        let expired = Reason::parse("expired").map_err(anyhow::Error::msg)?;
        let event = order.cancel(expired, Utc::now())?;
        save(conn, &order, version, event).await?;
        Ok::<_, OrderError>(Some(accepted(&order)))
    })
    .await?;
    if cancelled.is_some()
        && let Err(error) = handler.compensate(id).await
    {
        tracing::warn!(order_id = %id, error = format!("{error:#}"), "stock release of an expired order left to the saga");
    }
    Ok(cancelled)
}

/// Whether the order has a payment still `pending` (whatever fence it has or had).
async fn payment_pending(handler: &OrderCommandHandler, id: OrderId) -> anyhow::Result<bool> {
    let payments = handler
        .deps
        .payments
        .for_order(id)
        .await
        .map_err(|e| anyhow::anyhow!(e).context("asking for the order's payments"))?;
    Ok(payments
        .iter()
        .any(|payment| payment.status == PaymentStatus::Pending))
}

/// No confirm's fence holds the order at `now` (see `domain::Fence`).
fn not_being_paid(
    now: DateTime<Utc>,
) -> diesel::dsl::Or<
    diesel::dsl::IsNull<orders::confirm_until>,
    diesel::dsl::Lt<orders::confirm_until, DateTime<Utc>>,
> {
    orders::confirm_until
        .is_null()
        .or(orders::confirm_until.lt(now))
}

/// One page of pending orders created before `expired_before` and not being paid, oldest
/// first, after the `(created_at, id)` cursor if one is given.
async fn expired_after(
    handler: &OrderCommandHandler,
    expired_before: DateTime<Utc>,
    after: Option<(DateTime<Utc>, OrderId)>,
) -> anyhow::Result<Vec<Expired>> {
    let mut conn = db::connect(&handler.pool).await?;
    let mut query = orders::table
        .filter(orders::status.eq(State::PENDING))
        .filter(orders::created_at.lt(expired_before))
        .filter(not_being_paid(Utc::now()))
        .select((orders::id, orders::version, orders::created_at))
        .order((orders::created_at, orders::id))
        .limit(SWEEP_LIMIT)
        .into_boxed();
    if let Some((created_at, id)) = after {
        query = query.filter(
            orders::created_at.gt(created_at).or(orders::created_at
                .eq(created_at)
                .and(orders::id.gt(id.as_uuid()))),
        );
    }
    let rows: Vec<(Uuid, i64, DateTime<Utc>)> = query
        .load(&mut conn)
        .await
        .db_context("finding expired orders")?;
    Ok(rows
        .into_iter()
        .map(|(id, version, created_at)| Expired {
            id: id.into(),
            version,
            created_at,
        })
        .collect())
}

/// Pending orders older than `expiry`.
async fn due(handler: &OrderCommandHandler, expiry: Duration) -> anyhow::Result<Due> {
    let expired_before: DateTime<Utc> =
        Utc::now() - chrono::Duration::from_std(expiry).unwrap_or(chrono::Duration::MAX);
    let expired = expired_after(handler, expired_before, None).await?;
    Ok(Due {
        expired,
        expired_before,
    })
}
