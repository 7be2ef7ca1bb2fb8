//! The commands on a placed order: confirm (fence the order, charge, then confirm; the
//! stock is committed after, here and by the saga on `order.confirmed`), ship, deliver, and cancel (cancel,
//! then refund any payment and give the stock back, here and by the saga on
//! `order.cancelled`).

use chrono::Utc;
use kernel::db;
use kernel::{NewEvent, OrderId};
use orders_api::{Accepted, ExpectedVersion, OrderError, OrderStatus, Scope};
use payments_api::PaymentError;

use crate::commands::OrderCommandHandler;
use crate::domain::{Fence, Order, Reason};
use crate::store::{accepted, check_version, lift_fence, load_for_update, put_fence, save};

/// What of the payments module's refusal an order command passes on.
fn payment_error(error: PaymentError) -> OrderError {
    match error {
        e @ (PaymentError::Declined { .. }
        | PaymentError::GatewayUnavailable(_)
        | PaymentError::InvalidToken { .. }
        | PaymentError::Pending { .. }
        | PaymentError::AlreadyPending { .. }) => OrderError::Payment(e),
        PaymentError::Invalid(errors) => OrderError::Invalid(errors),
        PaymentError::NotFound(id) => {
            OrderError::Unexpected(anyhow::anyhow!("payment {id} vanished"))
        }
        PaymentError::Unexpected(e) => OrderError::Unexpected(e.context("charging")),
    }
}

impl OrderCommandHandler {
    /// Runs one status change under the row lock, on an order within `scope`.
    async fn change_status(
        &self,
        id: OrderId,
        expected: ExpectedVersion,
        scope: Scope,
        apply: impl FnOnce(&mut Order) -> Result<NewEvent, OrderError> + Send,
    ) -> Result<Accepted, OrderError> {
        let mut conn = db::connect(&self.pool).await?;
        db::transaction(&mut conn, async |conn| {
            let mut order = load_for_update(conn, id).await?;
            order.within(scope)?;
            check_version(&order, expected)?;
            let previous_version = order.version;
            let event = apply(&mut order)?;
            save(conn, &order, previous_version, event).await?;
            Ok(accepted(&order))
        })
        .await
    }

    /// Confirm: fence the order (one transaction), charge outside any transaction, then
    /// confirm it (another). The fence (`domain::Fence`) keeps every other confirm, cancel
    /// and expiry off the order while it is charged; a charge that did not capture lifts
    /// it at once.
    pub(crate) async fn confirm_order(
        &self,
        id: OrderId,
        token: String,
        expected: ExpectedVersion,
        scope: Scope,
    ) -> Result<Accepted, OrderError> {
        if token.trim().is_empty() {
            return Err(OrderError::Invalid(vec![kernel::FieldError::new(
                "payment_token",
                "is required",
            )]));
        }
        if let Scope::Own(user) = scope {
            // Tells nothing of the order: the caller learns only that they are inactive.
            self.active_user(user).await?;
        }
        let (total, fence) = self.fence_for_confirm(id, expected, scope).await?;
        self.fault("after_fence")?;
        let payment = match self.deps.payments.charge(id, total, &token).await {
            Ok(payment) => payment,
            Err(error) => {
                // Nothing captured (or not yet: a pending payment is then the payments
                // module's to settle, and it refuses another charge meanwhile).
                if let Err(lift) = self.lift_fence(id, fence).await {
                    tracing::warn!(order_id = %id, error = format!("{lift:#}"), "fence left to run out");
                }
                return Err(payment_error(error));
            }
        };
        self.fault("after_charge")?;
        let mut conn = db::connect(&self.pool).await?;
        let answer = db::transaction(&mut conn, async |conn| {
            let mut order = load_for_update(conn, id).await?;
            if order.status == OrderStatus::Confirmed && order.payment_id == Some(payment.id) {
                // The saga saw the capture first and confirmed for us.
                return Ok::<_, OrderError>(accepted(&order));
            }
            let previous = order.version;
            let event = order.confirm(payment.id)?;
            save(conn, &order, previous, event).await?;
            Ok(accepted(&order))
        })
        .await?;
        if let Err(error) = self.commit_stock(id).await {
            tracing::warn!(order_id = %id, error = format!("{error:#}"), "stock commit left to the saga");
        }
        Ok(answer)
    }

    /// Checks that the order may be confirmed (within `scope`, `If-Match`, pending, not
    /// being paid, a customer still active) and fences it; answers its total and the
    /// fence.
    async fn fence_for_confirm(
        &self,
        id: OrderId,
        expected: ExpectedVersion,
        scope: Scope,
    ) -> Result<(kernel::Money, Fence), OrderError> {
        let mut conn = db::connect(&self.pool).await?;
        db::transaction(&mut conn, async |conn| {
            let mut order = load_for_update(conn, id).await?;
            order.within(scope)?;
            check_version(&order, expected)?;
            let fence = order.fence_for_confirm(Utc::now(), self.confirm_fence)?;
            put_fence(conn, id, fence).await?;
            Ok((order.total, fence))
        })
        .await
    }

    async fn lift_fence(&self, id: OrderId, fence: Fence) -> Result<(), OrderError> {
        let mut conn = db::connect(&self.pool).await?;
        lift_fence(&mut conn, id, fence.attempt).await
    }

    pub(crate) async fn ship_order(
        &self,
        id: OrderId,
        expected: ExpectedVersion,
    ) -> Result<Accepted, OrderError> {
        self.change_status(id, expected, Scope::Any, Order::ship)
            .await
    }

    pub(crate) async fn deliver_order(
        &self,
        id: OrderId,
        expected: ExpectedVersion,
    ) -> Result<Accepted, OrderError> {
        self.change_status(id, expected, Scope::Any, Order::deliver)
            .await
    }

    pub(crate) async fn cancel_order(
        &self,
        id: OrderId,
        reason: String,
        expected: ExpectedVersion,
        scope: Scope,
    ) -> Result<Accepted, OrderError> {
        let reason = Reason::parse(&reason).map_err(|message| {
            OrderError::Invalid(vec![kernel::FieldError::new("reason", message)])
        })?;
        let answer = self
            .change_status(id, expected, scope, |order| {
                order.may_cancel_as(scope)?;
                order.cancel(reason, Utc::now())
            })
            .await?;
        self.fault("after_cancel")?;
        if let Err(error) = self.compensate(id).await {
            tracing::warn!(order_id = %id, error = format!("{error:#}"), "refund and restock left to the saga");
        }
        Ok(answer)
    }
}
