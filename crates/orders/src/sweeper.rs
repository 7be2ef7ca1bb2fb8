//! The sweeper: cancels pending orders that outlived `ORDER_EXPIRY` (reason `expired`,
//! which releases their stock through the usual cancellation), and finishes placements a
//! crash interrupted. Every process runs one; the row locks and version checks of the
//! commands make concurrent sweepers harmless.

use orders_api::{OrderCommands, OrderError};

use crate::Settings;
use crate::commands::OrderService;

pub(crate) async fn run(service: OrderService, settings: Settings) {
    loop {
        if let Err(error) = sweep(&service, &settings).await {
            tracing::warn!(error = format!("{error:#}"), "order sweep failed; retrying");
        }
        tokio::time::sleep(settings.sweep_every).await;
    }
}

pub(crate) async fn sweep(service: &OrderService, settings: &Settings) -> anyhow::Result<()> {
    let (expired, interrupted) = service
        .due(settings.order_expiry, settings.placement_timeout)
        .await?;
    for id in expired {
        match service.cancel(id, "expired".to_owned(), None).await {
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
    for id in interrupted {
        service.abandon(id).await?;
        tracing::info!(order_id = %id, "interrupted placement released");
    }
    Ok(())
}
