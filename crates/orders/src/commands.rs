//! The command handler: [`OrderCommands`] over the `orders` schema. Every command loads
//! the order, applies the aggregate's rules (`domain.rs`), and saves it with its event in
//! one transaction, holding the row lock (`store.rs`). The commands themselves live by
//! concern: `placement.rs` (place), `lifecycle.rs` (confirm, ship, deliver, cancel),
//! `compensation.rs` (refunds and stock, shared with the saga).
//!
//! Steps that cross modules run after the order's own transaction and are idempotent; the
//! saga (`saga.rs`) runs them again from the event log, so they finish even if this
//! process dies between two of them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kernel::db::Pool;
use kernel::{OrderId, UserId};
use orders_api::{Accepted, ExpectedVersion, NewOrder, OrderCommands, OrderError, Scope};
use payments_api::PaymentApi;
use products_api::ProductApi;
use users_api::{UserApi, UserError};

/// Called at named points of a command; an error stops the command there, as a crash
/// would. Only tests install one.
pub type FaultHook = Arc<dyn Fn(&'static str) -> anyhow::Result<()> + Send + Sync>;

/// The modules the orders module talks to, through their `-api` traits.
#[derive(Clone)]
pub struct Dependencies {
    pub users: Arc<dyn UserApi>,
    pub products: Arc<dyn ProductApi>,
    pub payments: Arc<dyn PaymentApi>,
}

/// [`OrderCommands`] over the `orders` schema (also the saga's and the sweeper's way to
/// change orders).
#[derive(Clone)]
pub struct OrderCommandHandler {
    pub(crate) pool: Pool,
    pub(crate) deps: Dependencies,
    /// How long a confirm's fence lasts if the confirm never lifts it (`Settings`).
    pub(crate) confirm_fence: Duration,
    /// How long an idempotency key is remembered (`Settings`).
    pub(crate) idempotency_ttl: Duration,
    /// Pending orders one customer may hold (`Settings`).
    pub(crate) max_pending_orders: u32,
    faults: Option<FaultHook>,
}

impl OrderCommandHandler {
    pub fn new(pool: Pool, deps: Dependencies, settings: &crate::Settings) -> Self {
        OrderCommandHandler {
            pool,
            deps,
            confirm_fence: settings.confirm_fence,
            idempotency_ttl: settings.idempotency_ttl,
            max_pending_orders: settings.max_pending_orders,
            faults: settings.faults.clone(),
        }
    }

    /// The user, if they exist (`UnknownUser`) and are active (`UserInactive`): who may
    /// place or confirm orders.
    pub(crate) async fn active_user(&self, id: UserId) -> Result<users_api::User, OrderError> {
        let user = match self.deps.users.get(id).await {
            Ok(user) => user,
            Err(UserError::NotFound(id)) => return Err(OrderError::UnknownUser(id)),
            Err(e) => {
                return Err(OrderError::Unexpected(
                    anyhow::anyhow!(e).context("looking up the user"),
                ));
            }
        };
        if !user.active {
            return Err(OrderError::UserInactive(user.id));
        }
        Ok(user)
    }

    /// Stops the command at `point` if a test asked for it.
    pub(crate) fn fault(&self, point: &'static str) -> Result<(), OrderError> {
        match &self.faults {
            Some(hook) => hook(point).map_err(OrderError::Unexpected),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl OrderCommands for OrderCommandHandler {
    #[tracing::instrument(name = "orders.place", skip_all)]
    async fn place(&self, order: NewOrder, key: Option<String>) -> Result<Accepted, OrderError> {
        self.place_order(order, key).await
    }

    #[tracing::instrument(name = "orders.confirm", skip_all)]
    async fn confirm(
        &self,
        id: OrderId,
        token: String,
        expected: ExpectedVersion,
        scope: Scope,
    ) -> Result<Accepted, OrderError> {
        self.confirm_order(id, token, expected, scope).await
    }

    #[tracing::instrument(name = "orders.ship", skip_all)]
    async fn ship(&self, id: OrderId, expected: ExpectedVersion) -> Result<Accepted, OrderError> {
        self.ship_order(id, expected).await
    }

    #[tracing::instrument(name = "orders.deliver", skip_all)]
    async fn deliver(
        &self,
        id: OrderId,
        expected: ExpectedVersion,
    ) -> Result<Accepted, OrderError> {
        self.deliver_order(id, expected).await
    }

    #[tracing::instrument(name = "orders.cancel", skip_all)]
    async fn cancel(
        &self,
        id: OrderId,
        reason: String,
        expected: ExpectedVersion,
        scope: Scope,
    ) -> Result<Accepted, OrderError> {
        self.cancel_order(id, reason, expected, scope).await
    }
}
