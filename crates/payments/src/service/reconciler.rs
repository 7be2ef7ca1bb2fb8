//! The reconciler: settles what no answer settled. A payment still `pending` once its own
//! call has certainly given up (a timeout, or a crash between the gateway's answer and our
//! commit) is settled by asking the gateway what happened under its key
//! ([`PaymentGateway::lookup`](crate::PaymentGateway::lookup)); a key the gateway never
//! heard of is voided first ([`PaymentGateway::void`](crate::PaymentGateway::void)) and
//! settled `failed` only once the void took, so a charge still on its way takes nothing. A
//! refund asked for but not confirmed is asked for again (the key makes that safe).
//!
//! **Several instances at once.** Each round claims a batch in a short transaction:
//! `FOR UPDATE SKIP LOCKED`, then each claimed row's next check is pushed back (backoff:
//! the gateway deadline doubled per check, at most [`ReconcilerSettings::longest_pause`])
//! and the transaction ends. The claim is that schedule, not a lock: no lock is held
//! while the gateway is asked, and another instance skips the row until its next check.
//! Settling is compare-and-set on the status and appends the settling event in the same
//! transaction (`charge.rs` `settle`), so two settlers never both publish.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use kernel::PaymentId;
use kernel::db::{self, DbContext};
use payments_api::{Payment, PaymentError, PaymentStatus};
use uuid::Uuid;

use super::charge::Settlement;
use super::{PaymentService, reload};
use crate::domain::StoredStatus;
use crate::gateway::ChargeState;
use crate::schema::payments;

/// How the reconciler runs.
#[derive(Clone, Copy, Debug)]
pub struct ReconcilerSettings {
    /// How often a round runs.
    pub every: Duration,
    /// Payments claimed per round.
    pub batch: i64,
    /// The longest pause between two checks of one payment.
    pub longest_pause: Duration,
}

impl Default for ReconcilerSettings {
    fn default() -> Self {
        ReconcilerSettings {
            every: Duration::from_secs(1),
            batch: 20,
            longest_pause: Duration::from_secs(60),
        }
    }
}

impl PaymentService {
    /// Runs rounds every `settings.every` until aborted; a failed round is logged and
    /// retried the next time.
    pub fn spawn_reconciler(
        self: Arc<Self>,
        settings: ReconcilerSettings,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(settings.every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(error) = self.reconcile(&settings).await {
                    tracing::warn!(
                        error = format!("{error:?}"),
                        "payment reconciliation failed; retrying"
                    );
                }
            }
        })
    }

    /// One round: claims the payments due for a check and settles each it can. Returns how
    /// many it settled.
    pub async fn reconcile(&self, settings: &ReconcilerSettings) -> Result<usize, PaymentError> {
        let claimed = self.claim(settings).await?;
        let mut settled = 0;
        for id in claimed {
            match self.check(id).await {
                Ok(true) => settled += 1,
                Ok(false) => {}
                Err(error) => tracing::warn!(payment_id = %id, error = format!("{error:?}"),
                    "could not settle a payment yet; it will be checked again"),
            }
        }
        Ok(settled)
    }

    /// Claims up to a batch of payments due for a check, pushing each one's next check back.
    async fn claim(&self, settings: &ReconcilerSettings) -> Result<Vec<PaymentId>, PaymentError> {
        let mut conn = db::connect(&self.pool).await?;
        let timeout = self.settings.gateway_timeout;
        db::transaction(&mut conn, async |conn| {
            let now = Utc::now();
            let due: Vec<(Uuid, i32)> = payments::table
                .filter(payments::check_after.le(now))
                .filter(
                    payments::status
                        .eq(StoredStatus(PaymentStatus::Pending))
                        .or(payments::status
                            .eq(StoredStatus(PaymentStatus::Captured))
                            .and(payments::refund_requested_at.is_not_null())),
                )
                .order(payments::check_after)
                .limit(settings.batch)
                .select((payments::id, payments::checks))
                .for_update()
                .skip_locked()
                .load(conn)
                .await
                .db_context("claiming payments to settle")?;
            for (id, checks) in &due {
                let pause = timeout
                    .saturating_mul(2u32.saturating_pow((*checks as u32).min(16)))
                    .min(settings.longest_pause);
                let next = now + chrono::Duration::from_std(pause).unwrap_or(chrono::Duration::MAX);
                diesel::update(payments::table.find(id))
                    .set((
                        payments::check_after.eq(next),
                        payments::checks.eq(payments::checks + 1),
                    ))
                    .execute(conn)
                    .await
                    .db_context("scheduling a payment's next check")?;
            }
            Ok(due.into_iter().map(|(id, _)| id.into()).collect())
        })
        .await
    }

    /// Asks the gateway about one claimed payment and settles it; `Ok(false)` when it had
    /// been settled meanwhile or the gateway could not tell.
    async fn check(&self, id: PaymentId) -> Result<bool, PaymentError> {
        let payment: Payment = {
            let mut conn = db::connect(&self.pool).await?;
            reload(&mut conn, id).await?
        };
        match payment.status {
            PaymentStatus::Pending => {}
            PaymentStatus::Captured => {
                self.finish_refund(payment).await?;
                return Ok(true);
            }
            _ => return Ok(false),
        }
        let answer = tokio::time::timeout(self.settings.gateway_timeout, self.ask(id)).await;
        let settlement = match answer {
            Err(_elapsed) => {
                return Err(PaymentError::Pending {
                    order_id: payment.order_id,
                    payment_id: id,
                });
            }
            Ok(Err(error)) => {
                return Err(PaymentError::Unexpected(anyhow::anyhow!(
                    "asking the gateway about payment {id}: {error}"
                )));
            }
            // Refunded: it was taken (and given back since, by someone who knew): the
            // capture is the fact to record; a refund is asked for by whoever wants it.
            Ok(Ok(ChargeState::Charged(receipt) | ChargeState::Refunded(receipt))) => {
                Settlement::Captured {
                    reference: receipt.reference,
                }
            }
            Ok(Ok(ChargeState::Declined(reason))) => Settlement::Declined { reason },
            Ok(Ok(ChargeState::Failed(reason))) => Settlement::Failed { reason },
            Ok(Ok(ChargeState::Voided)) => Settlement::Failed {
                reason: "the gateway never received the charge; its key is voided".to_owned(),
            },
            Ok(Ok(ChargeState::Unknown)) => {
                return Err(PaymentError::Unexpected(anyhow::anyhow!(
                    "the gateway answered a void of payment {id} with an unknown key"
                )));
            }
        };
        let settled = self.settle(id, settlement).await?;
        tracing::info!(order_id = %settled.order_id, payment_id = %id, status = settled.status.as_str(),
            "reconciled a pending payment with the gateway");
        Ok(true)
    }

    /// What the gateway did under the key `id`, for certain: a key it never heard of is
    /// voided first. That it has not heard of it does not mean nothing will be taken (the
    /// charge's own call may still be on its way, however late), and settling it `failed`
    /// on that alone would leave any charge arriving later with a failed payment: money
    /// taken that nothing of ours would ever give back. After the void, a late charge takes
    /// nothing; or the void finds that the charge came first, and answers it.
    async fn ask(&self, id: PaymentId) -> Result<ChargeState, crate::GatewayError> {
        match self.gateway.lookup(id).await? {
            ChargeState::Unknown => self.gateway.void(id).await,
            known => Ok(known),
        }
    }
}
