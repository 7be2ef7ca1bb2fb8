//! The sweeper: cancels pending orders that outlived `ORDER_EXPIRY` (reason `expired`,
//! which releases their stock through the usual cancellation), and finishes placements a
//! crash interrupted. Every process runs one; the row locks and version checks of the
//! commands make concurrent sweepers harmless.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use kernel::OrderId;
use kernel::db::{self, DbContext};
use orders_api::{OrderCommands, OrderError};
use uuid::Uuid;

use crate::Settings;
use crate::commands::OrderCommandHandler;
use crate::schema::orders;
use crate::state::State;

/// Most orders of each kind one sweep handles.
const SWEEP_LIMIT: i64 = 100;

/// The orders a sweep has work for.
struct Due {
    /// Pending orders older than the expiry.
    expired: Vec<OrderId>,
    /// Placements cut short by a crash.
    interrupted: Vec<OrderId>,
}

pub(crate) async fn run(handler: OrderCommandHandler, settings: Settings) {
    loop {
        if let Err(error) = sweep(&handler, &settings).await {
            tracing::warn!(error = format!("{error:#}"), "order sweep failed; retrying");
        }
        tokio::time::sleep(settings.sweep_every).await;
    }
}

pub(crate) async fn sweep(
    handler: &OrderCommandHandler,
    settings: &Settings,
) -> anyhow::Result<()> {
    let due = due(handler, settings.order_expiry, settings.placement_timeout).await?;
    for id in due.expired {
        match handler.cancel(id, "expired".to_owned(), None).await {
            Ok(_) => tracing::info!(order_id = %id, "expired pending order cancelled"),
            // Confirmed or cancelled meanwhile, by a request or another process.
            Err(
                OrderError::InvalidTransition { .. }
                | OrderError::Conflict(_)
                | OrderError::NotFound(_),
            ) => {}
            Err(e) => return Err(anyhow::anyhow!(e).context("cancelling an expired order")),
        }
    }
    for id in due.interrupted {
        handler.abandon(id).await?;
        tracing::info!(order_id = %id, "interrupted placement released");
    }
    Ok(())
}

/// Pending orders older than `expiry`, and placements cut short by a crash.
async fn due(
    handler: &OrderCommandHandler,
    expiry: Duration,
    placement_timeout: Duration,
) -> anyhow::Result<Due> {
    let mut conn = db::connect(&handler.pool).await?;
    let now = Utc::now();
    let expired_before: DateTime<Utc> =
        now - chrono::Duration::from_std(expiry).unwrap_or(chrono::Duration::MAX);
    let expired: Vec<Uuid> = orders::table
        .filter(orders::status.eq(State::PENDING))
        .filter(orders::created_at.lt(expired_before))
        .select(orders::id)
        .order(orders::created_at)
        .limit(SWEEP_LIMIT)
        .load(&mut conn)
        .await
        .db_context("finding expired orders")?;
    let stuck_before =
        now - chrono::Duration::from_std(placement_timeout).unwrap_or(chrono::Duration::MAX);
    let interrupted: Vec<Uuid> = orders::table
        .filter(
            orders::status
                .eq(State::Placing)
                .and(orders::created_at.lt(stuck_before))
                .or(orders::status.eq(State::Abandoned)),
        )
        .select(orders::id)
        .limit(SWEEP_LIMIT)
        .load(&mut conn)
        .await
        .db_context("finding interrupted placements")?;
    Ok(Due {
        expired: expired.into_iter().map(Into::into).collect(),
        interrupted: interrupted.into_iter().map(Into::into).collect(),
    })
}
