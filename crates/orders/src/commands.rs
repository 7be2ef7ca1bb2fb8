//! The write side: every command loads the order, applies the aggregate's rules
//! (`domain.rs`), and saves it with its event in one transaction, holding the row lock.
//!
//! Steps that cross modules run after the order's own transaction and are idempotent; the
//! saga (`saga.rs`) runs them again from the event log, so they finish even if this
//! process dies between two of them:
//! - place: record the order as `placing` (with its idempotency key), reserve stock, then
//!   make it `pending` and publish `order.created`. A placement that fails or is cut short
//!   is `abandoned`, its reservation released (a release fences late reservations), then
//!   `rejected`; the sweeper (`sweeper.rs`) finishes any that a crash left behind.
//! - confirm: charge (at most one captured payment per order), then confirm; the stock is
//!   committed after, here and by the saga on `order.confirmed`.
//! - cancel: cancel, then refund any payment and give the stock back, here and by the saga
//!   on `order.cancelled`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::db::{self, DbContext, Pool};
use kernel::{Money, NewEvent, OrderId, Validation};
use orders_api::{
    Accepted, ExpectedVersion, MAX_ITEMS, MAX_QUANTITY, NewOrder, OrderCommands, OrderError,
    OrderStatus, events,
};
use payments_api::{PaymentApi, PaymentError};
use products_api::{ProductApi, ProductError, ReservationLine, ReservationStatus};
use rust_decimal::Decimal;
use users_api::{UserApi, UserError};
use uuid::Uuid;

use crate::SCHEMA;
use crate::domain::{Order, Reason, State};
use crate::schema::write::{idempotency_keys, order_lines, orders};

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

/// [`OrderCommands`] over the `orders` schema.
#[derive(Clone)]
pub struct OrderService {
    pool: Pool,
    deps: Dependencies,
    faults: Option<FaultHook>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = orders)]
struct OrderRow {
    id: Uuid,
    status: String,
    total: Decimal,
    payment_id: Option<Uuid>,
    cancel_reason: Option<String>,
    version: i64,
}

impl OrderRow {
    /// The order, when it is visible (not an internal placement state).
    fn into_order(self) -> Result<Option<Order>, OrderError> {
        let State::Visible(status) = State::parse(&self.status)? else {
            return Ok(None);
        };
        Ok(Some(Order {
            id: self.id.into(),
            status,
            total: Money::from_decimal(self.total)
                .map_err(|e| anyhow::anyhow!("stored total: {e}"))?,
            payment_id: self.payment_id.map(Into::into),
            cancel_reason: self.cancel_reason,
            version: self.version,
        }))
    }
}

/// Loads a visible order; with `lock`, holds its row until the transaction ends.
pub(crate) async fn load(
    conn: &mut AsyncPgConnection,
    id: OrderId,
    lock: bool,
) -> Result<Order, OrderError> {
    let query = orders::table
        .find(id.as_uuid())
        .select(OrderRow::as_select());
    let row = if lock {
        query.for_update().first(conn).await
    } else {
        query.first(conn).await
    };
    row.optional()
        .db_context("loading order")?
        .map(OrderRow::into_order)
        .transpose()?
        .flatten()
        .ok_or(OrderError::NotFound(id))
}

/// Saves `order` (which was at `previous_version`) and appends its event.
pub(crate) async fn save(
    conn: &mut AsyncPgConnection,
    order: &Order,
    previous_version: i64,
    event: NewEvent,
) -> Result<(), OrderError> {
    let updated = diesel::update(
        orders::table
            .find(order.id.as_uuid())
            .filter(orders::version.eq(previous_version)),
    )
    .set((
        orders::status.eq(order.status.as_str()),
        orders::version.eq(order.version),
        orders::payment_id.eq(order.payment_id.map(|p| p.as_uuid())),
        orders::cancel_reason.eq(&order.cancel_reason),
        orders::updated_at.eq(Utc::now()),
    ))
    .execute(conn)
    .await
    .db_context("saving order")?;
    if updated != 1 {
        return Err(OrderError::Conflict(order.id));
    }
    eventlog::append(conn, SCHEMA.name, &[event]).await?;
    Ok(())
}

fn accepted(order: &Order) -> Accepted {
    Accepted {
        order_id: order.id,
        status: order.status,
        version: order.version,
    }
}

fn check_version(order: &Order, expected: ExpectedVersion) -> Result<(), OrderError> {
    match expected {
        Some(expected) if expected != order.version => Err(OrderError::VersionMismatch {
            order_id: order.id,
            expected,
            actual: order.version,
        }),
        _ => Ok(()),
    }
}

fn payment_error(order_id: OrderId, error: PaymentError) -> OrderError {
    match error {
        PaymentError::Declined { .. } => OrderError::PaymentDeclined(order_id),
        PaymentError::GatewayUnavailable(why) => OrderError::PaymentGateway(why),
        PaymentError::InvalidToken(token) => OrderError::InvalidPaymentToken(token),
        PaymentError::Invalid(errors) => OrderError::Invalid(errors),
        PaymentError::NotFound(id) => {
            OrderError::Unexpected(anyhow::anyhow!("payment {id} vanished"))
        }
        PaymentError::Unexpected(e) => OrderError::Unexpected(e.context("charging")),
    }
}

/// A priced line, ready to be stored and published.
struct Line {
    product_id: Uuid,
    product_name: String,
    quantity: i64,
    price: Money,
}

enum Claim {
    /// The key is ours (or there is none): go on.
    Fresh,
    /// The key was used for this same request: its answer.
    Replay(Accepted),
}

impl OrderService {
    pub fn new(pool: Pool, deps: Dependencies, faults: Option<FaultHook>) -> Self {
        OrderService { pool, deps, faults }
    }

    fn fault(&self, point: &'static str) -> Result<(), OrderError> {
        match &self.faults {
            Some(hook) => hook(point).map_err(OrderError::Unexpected),
            None => Ok(()),
        }
    }

    fn validate(order: &NewOrder) -> Result<(), OrderError> {
        let mut v = Validation::default();
        if order.items.is_empty() || order.items.len() > MAX_ITEMS {
            v.push(
                "items",
                format!(
                    "must hold 1 to {MAX_ITEMS} lines, got {}",
                    order.items.len()
                ),
            );
        }
        for (i, line) in order.items.iter().enumerate() {
            if !(1..=MAX_QUANTITY).contains(&line.quantity) {
                v.push(
                    &format!("items[{i}].quantity"),
                    format!("must be 1 to {MAX_QUANTITY}, got {}", line.quantity),
                );
            }
            if order.items[..i]
                .iter()
                .any(|other| other.product_id == line.product_id)
            {
                v.push(
                    &format!("items[{i}].product_id"),
                    format!("product {} is already in the order", line.product_id),
                );
            }
        }
        v.finish().map_err(OrderError::Invalid)
    }

    /// Checks the user, prices every line from the catalog, totals exactly.
    async fn price(
        &self,
        order: &NewOrder,
    ) -> Result<(users_api::User, Vec<Line>, Money), OrderError> {
        let user = match self.deps.users.get(order.user_id).await {
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
        let ids: Vec<_> = order.items.iter().map(|l| l.product_id).collect();
        let products = self.deps.products.lookup(&ids).await.map_err(|e| match e {
            ProductError::UnknownProducts(ids) => OrderError::UnknownProducts(ids),
            e => OrderError::Unexpected(anyhow::anyhow!(e).context("looking up products")),
        })?;
        let mut total = Money::ZERO;
        let mut lines = Vec::with_capacity(products.len());
        for (line, product) in order.items.iter().zip(products) {
            let quantity = u32::try_from(line.quantity)
                .map_err(|_| anyhow::anyhow!("quantity out of range"))?;
            let subtotal = product
                .price
                .checked_mul(quantity)
                .ok_or_else(|| anyhow::anyhow!("total overflows"))?;
            total = total
                .checked_add(subtotal)
                .ok_or_else(|| anyhow::anyhow!("total overflows"))?;
            lines.push(Line {
                product_id: product.id.as_uuid(),
                product_name: product.name,
                quantity: line.quantity,
                price: product.price,
            });
        }
        Ok((user, lines, total))
    }

    /// Looks up an idempotency key: a replay answers the first answer; a key in use by a
    /// request still running is waited for (bounded); a key of a failed request is free.
    async fn replay(&self, key: &str, request: &serde_json::Value) -> Result<Claim, OrderError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let mut conn = db::connect(&self.pool).await?;
            let found: Option<(serde_json::Value, Option<serde_json::Value>)> =
                idempotency_keys::table
                    .find(key)
                    .select((idempotency_keys::request, idempotency_keys::response))
                    .first(&mut conn)
                    .await
                    .optional()
                    .db_context("looking up idempotency key")?;
            drop(conn);
            match found {
                None => return Ok(Claim::Fresh),
                Some((first, _)) if first != *request => {
                    return Err(OrderError::IdempotencyKeyReused(key.to_owned()));
                }
                Some((_, Some(response))) => {
                    let accepted = serde_json::from_value(response)
                        .map_err(|e| anyhow::anyhow!("stored answer: {e}"))?;
                    return Ok(Claim::Replay(accepted));
                }
                Some((_, None)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Some((_, None)) => return Err(OrderError::IdempotencyKeyInUse(key.to_owned())),
            }
        }
    }

    /// Records the order as `placing`, claiming the idempotency key in the same
    /// transaction. `Ok(false)`: a concurrent request claimed the key first.
    async fn record(
        &self,
        id: OrderId,
        order: &NewOrder,
        lines: &[Line],
        total: Money,
        key: Option<(&str, &serde_json::Value)>,
    ) -> Result<bool, OrderError> {
        let mut conn = db::connect(&self.pool).await?;
        db::transaction(&mut conn, async |conn| {
            let now = Utc::now();
            diesel::insert_into(orders::table)
                .values((
                    orders::id.eq(id.as_uuid()),
                    orders::user_id.eq(order.user_id.as_uuid()),
                    orders::status.eq(State::Placing.as_str()),
                    orders::total.eq(total.amount()),
                    orders::version.eq(0),
                    orders::created_at.eq(now),
                    orders::updated_at.eq(now),
                ))
                .execute(conn)
                .await
                .db_context("recording order")?;
            let rows: Vec<_> = lines
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    (
                        order_lines::order_id.eq(id.as_uuid()),
                        order_lines::line.eq(i as i32),
                        order_lines::product_id.eq(l.product_id),
                        order_lines::product_name.eq(&l.product_name),
                        order_lines::quantity.eq(l.quantity),
                        order_lines::price.eq(l.price.amount()),
                    )
                })
                .collect();
            diesel::insert_into(order_lines::table)
                .values(rows)
                .execute(conn)
                .await
                .db_context("recording lines")?;
            if let Some((key, request)) = key {
                let claimed = diesel::insert_into(idempotency_keys::table)
                    .values((
                        idempotency_keys::key.eq(key),
                        idempotency_keys::request.eq(request),
                        idempotency_keys::order_id.eq(id.as_uuid()),
                        idempotency_keys::created_at.eq(now),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await
                    .db_context("claiming idempotency key")?;
                if claimed == 0 {
                    // Roll back the order we just recorded.
                    return Err(OrderError::Conflict(id));
                }
            }
            Ok(true)
        })
        .await
        .or_else(|e| match e {
            OrderError::Conflict(conflict) if conflict == id && key.is_some() => Ok(false),
            e => Err(e),
        })
    }

    /// Makes a recorded order `pending` and publishes it; stores the answer for its key.
    async fn publish(
        &self,
        id: OrderId,
        created: &events::OrderCreated,
        key: Option<&str>,
    ) -> Result<Accepted, OrderError> {
        let answer = Accepted {
            order_id: id,
            status: OrderStatus::Pending,
            version: 1,
        };
        let mut conn = db::connect(&self.pool).await?;
        db::transaction(&mut conn, async |conn| {
            let placed = diesel::update(
                orders::table
                    .find(id.as_uuid())
                    .filter(orders::status.eq(State::Placing.as_str())),
            )
            .set((
                orders::status.eq(OrderStatus::Pending.as_str()),
                orders::version.eq(1),
                orders::updated_at.eq(Utc::now()),
            ))
            .execute(conn)
            .await
            .db_context("publishing order")?;
            if placed != 1 {
                return Err(OrderError::Unexpected(anyhow::anyhow!(
                    "placement of order {id} was abandoned meanwhile"
                )));
            }
            eventlog::append(
                conn,
                SCHEMA.name,
                &[NewEvent::new(events::ORDER_CREATED, id, 1, created)],
            )
            .await?;
            if let Some(key) = key {
                let response = serde_json::to_value(answer).map_err(anyhow::Error::from)?;
                diesel::update(idempotency_keys::table.find(key))
                    .set(idempotency_keys::response.eq(response))
                    .execute(conn)
                    .await
                    .db_context("storing idempotent answer")?;
            }
            Ok(answer)
        })
        .await
    }

    /// Gives up a placement: `abandoned`, its reservation released (and fenced), then
    /// `rejected`, its idempotency key freed. Safe to repeat; the sweeper calls it for
    /// placements a crash interrupted.
    pub(crate) async fn abandon(&self, id: OrderId) -> anyhow::Result<()> {
        let mut conn = db::connect(&self.pool).await?;
        diesel::update(
            orders::table
                .find(id.as_uuid())
                .filter(orders::status.eq(State::Placing.as_str())),
        )
        .set((
            orders::status.eq(State::Abandoned.as_str()),
            orders::updated_at.eq(Utc::now()),
        ))
        .execute(&mut conn)
        .await
        .db_context("abandoning placement")?;
        match self.deps.products.release(id).await {
            Ok(()) | Err(ProductError::ReservationClosed { .. }) => {}
            Err(e) => return Err(anyhow::anyhow!(e).context("releasing an abandoned placement")),
        }
        db::transaction(&mut conn, async |conn| {
            diesel::update(
                orders::table
                    .find(id.as_uuid())
                    .filter(orders::status.eq(State::Abandoned.as_str())),
            )
            .set((
                orders::status.eq(State::Rejected.as_str()),
                orders::updated_at.eq(Utc::now()),
            ))
            .execute(conn)
            .await
            .db_context("rejecting placement")?;
            diesel::delete(
                idempotency_keys::table.filter(idempotency_keys::order_id.eq(id.as_uuid())),
            )
            .filter(idempotency_keys::response.is_null())
            .execute(conn)
            .await
            .db_context("freeing idempotency key")?;
            anyhow::Ok(())
        })
        .await
    }

    /// Runs one status change under the row lock.
    async fn change(
        &self,
        id: OrderId,
        expected: ExpectedVersion,
        apply: impl FnOnce(&mut Order) -> Result<NewEvent, OrderError> + Send,
    ) -> Result<(Accepted, OrderStatus), OrderError> {
        let mut conn = db::connect(&self.pool).await?;
        db::transaction(&mut conn, async |conn| {
            let mut order = load(conn, id, true).await?;
            check_version(&order, expected)?;
            let (previous_version, previous_status) = (order.version, order.status);
            let event = apply(&mut order)?;
            save(conn, &order, previous_version, event).await?;
            Ok((accepted(&order), previous_status))
        })
        .await
    }

    /// Refunds any payment and gives the order's stock back, whatever state the
    /// reservation is in. Idempotent; the saga runs it on every `order.cancelled`.
    pub(crate) async fn compensate(&self, id: OrderId) -> anyhow::Result<()> {
        self.deps
            .payments
            .refund(id)
            .await
            .map_err(|e| anyhow::anyhow!(e).context("refunding"))?;
        self.give_stock_back(id).await
    }

    async fn give_stock_back(&self, id: OrderId) -> anyhow::Result<()> {
        let products = &self.deps.products;
        let result = match products.reservation(id).await {
            Ok(ReservationStatus::Reserved) => products.release(id).await,
            Ok(ReservationStatus::Committed) => products.return_stock(id).await,
            Ok(ReservationStatus::Released | ReservationStatus::Returned)
            | Err(ProductError::ReservationNotFound(_)) => Ok(()),
            Err(e) => Err(e),
        };
        result.map_err(|e| anyhow::anyhow!(e).context("giving stock back"))
    }

    /// Commits a confirmed order's reserved stock. Idempotent; also run by the saga.
    pub(crate) async fn commit_stock(&self, id: OrderId) -> anyhow::Result<()> {
        match self.deps.products.commit(id).await {
            // Already committed, or given back by a later cancellation.
            Ok(()) | Err(ProductError::ReservationClosed { .. }) => Ok(()),
            Err(e) => Err(anyhow::anyhow!(e).context("committing stock")),
        }
    }

    /// The saga's answer to a captured payment: confirm the order if it still waits for
    /// it (inside the saga's transaction), refund if the order is gone.
    pub(crate) async fn on_payment_captured(
        &self,
        conn: &mut AsyncPgConnection,
        order_id: OrderId,
        payment_id: kernel::PaymentId,
    ) -> anyhow::Result<()> {
        match load(conn, order_id, true).await {
            Ok(mut order) if order.status == OrderStatus::Pending => {
                let previous = order.version;
                let event = order.confirm(payment_id)?;
                save(conn, &order, previous, event).await?;
                tracing::info!(%order_id, %payment_id, "saga confirmed an order whose payment was captured");
                Ok(())
            }
            Ok(order) if order.status == OrderStatus::Cancelled => {
                self.deps
                    .payments
                    .refund(order_id)
                    .await
                    .map_err(|e| anyhow::anyhow!(e).context("refunding"))?;
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(OrderError::NotFound(_)) => {
                self.deps
                    .payments
                    .refund(order_id)
                    .await
                    .map_err(|e| anyhow::anyhow!(e).context("refunding"))?;
                Ok(())
            }
            Err(e) => Err(anyhow::anyhow!(e)),
        }
    }

    /// Pending orders older than `expiry`, and placements cut short by a crash.
    pub(crate) async fn due(
        &self,
        expiry: Duration,
        placement_timeout: Duration,
    ) -> anyhow::Result<(Vec<OrderId>, Vec<OrderId>)> {
        let mut conn = db::connect(&self.pool).await?;
        let now = Utc::now();
        let expired_before: DateTime<Utc> =
            now - chrono::Duration::from_std(expiry).unwrap_or(chrono::Duration::MAX);
        let expired: Vec<Uuid> = orders::table
            .filter(orders::status.eq(OrderStatus::Pending.as_str()))
            .filter(orders::created_at.lt(expired_before))
            .select(orders::id)
            .order(orders::created_at)
            .limit(100)
            .load(&mut conn)
            .await
            .db_context("finding expired orders")?;
        let stuck_before =
            now - chrono::Duration::from_std(placement_timeout).unwrap_or(chrono::Duration::MAX);
        let stuck: Vec<Uuid> = orders::table
            .filter(
                orders::status
                    .eq(State::Placing.as_str())
                    .and(orders::created_at.lt(stuck_before))
                    .or(orders::status.eq(State::Abandoned.as_str())),
            )
            .select(orders::id)
            .limit(100)
            .load(&mut conn)
            .await
            .db_context("finding interrupted placements")?;
        Ok((
            expired.into_iter().map(Into::into).collect(),
            stuck.into_iter().map(Into::into).collect(),
        ))
    }
}

#[async_trait]
impl OrderCommands for OrderService {
    #[tracing::instrument(name = "orders.place", skip_all)]
    async fn place(&self, order: NewOrder, key: Option<String>) -> Result<Accepted, OrderError> {
        Self::validate(&order)?;
        let request = serde_json::to_value(&order).map_err(anyhow::Error::from)?;
        if let Some(key) = &key
            && let Claim::Replay(answer) = self.replay(key, &request).await?
        {
            return Ok(answer);
        }
        let (user, lines, total) = self.price(&order).await?;
        let id = OrderId::generate();
        if !self
            .record(
                id,
                &order,
                &lines,
                total,
                key.as_deref().map(|k| (k, &request)),
            )
            .await?
        {
            // A concurrent request with the same key won the claim: answer as it does.
            return match self
                .replay(key.as_deref().unwrap_or_default(), &request)
                .await?
            {
                Claim::Replay(answer) => Ok(answer),
                Claim::Fresh => Err(OrderError::IdempotencyKeyInUse(key.unwrap_or_default())),
            };
        }
        let reservation: Vec<ReservationLine> = order
            .items
            .iter()
            .map(|l| ReservationLine {
                product_id: l.product_id,
                quantity: l.quantity as u32,
            })
            .collect();
        let reserved = self.deps.products.reserve(id, &reservation).await;
        let reserved = reserved.map_err(|e| match e {
            ProductError::InsufficientStock {
                product_id,
                requested,
                available,
            } => OrderError::InsufficientStock {
                product_id,
                requested,
                available,
            },
            ProductError::UnknownProducts(ids) => OrderError::UnknownProducts(ids),
            e => OrderError::Unexpected(anyhow::anyhow!(e).context("reserving stock")),
        });
        let published = match reserved {
            Ok(()) => match self.fault("after_reserve") {
                Ok(()) => {
                    let created = events::OrderCreated {
                        user_id: user.id,
                        user_name: user.name,
                        user_email: user.email,
                        items: lines
                            .into_iter()
                            .map(|l| events::OrderLine {
                                product_id: l.product_id.into(),
                                product_name: l.product_name,
                                quantity: l.quantity,
                                price: l.price,
                            })
                            .collect(),
                        total,
                    };
                    self.publish(id, &created, key.as_deref()).await
                }
                Err(e) => return Err(e),
            },
            Err(e) => Err(e),
        };
        if published.is_err()
            && let Err(error) = self.abandon(id).await
        {
            tracing::warn!(order_id = %id, error = format!("{error:#}"), "placement left for the sweeper");
        }
        if let Ok(answer) = &published {
            tracing::info!(order_id = %answer.order_id, "order placed");
        }
        published
    }

    #[tracing::instrument(name = "orders.confirm", skip_all)]
    async fn confirm(
        &self,
        id: OrderId,
        token: String,
        expected: ExpectedVersion,
    ) -> Result<Accepted, OrderError> {
        if token.trim().is_empty() {
            return Err(OrderError::Invalid(vec![kernel::FieldError::new(
                "payment_token",
                "is required",
            )]));
        }
        let order = {
            let mut conn = db::connect(&self.pool).await?;
            load(&mut conn, id, false).await?
        };
        check_version(&order, expected)?;
        if order.status != OrderStatus::Pending {
            return Err(OrderError::InvalidTransition {
                from: order.status,
                command: "confirm",
            });
        }
        let payment = self
            .deps
            .payments
            .charge(id, order.total, &token)
            .await
            .map_err(|e| payment_error(id, e))?;
        self.fault("after_charge")?;
        let mut conn = db::connect(&self.pool).await?;
        let answer = db::transaction(&mut conn, async |conn| {
            let mut order = load(conn, id, true).await?;
            if order.status == OrderStatus::Confirmed && order.payment_id == Some(payment.id) {
                // The saga saw the capture first and confirmed for us.
                return Ok::<_, OrderError>(accepted(&order));
            }
            if order.status == OrderStatus::Pending {
                check_version(&order, expected)?;
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

    #[tracing::instrument(name = "orders.ship", skip_all)]
    async fn ship(&self, id: OrderId, expected: ExpectedVersion) -> Result<Accepted, OrderError> {
        Ok(self.change(id, expected, Order::ship).await?.0)
    }

    #[tracing::instrument(name = "orders.deliver", skip_all)]
    async fn deliver(
        &self,
        id: OrderId,
        expected: ExpectedVersion,
    ) -> Result<Accepted, OrderError> {
        Ok(self.change(id, expected, Order::deliver).await?.0)
    }

    #[tracing::instrument(name = "orders.cancel", skip_all)]
    async fn cancel(
        &self,
        id: OrderId,
        reason: String,
        expected: ExpectedVersion,
    ) -> Result<Accepted, OrderError> {
        let reason = Reason::parse(&reason).map_err(|message| {
            OrderError::Invalid(vec![kernel::FieldError::new("reason", message)])
        })?;
        let (answer, _) = self
            .change(id, expected, |order| order.cancel(reason))
            .await?;
        self.fault("after_cancel")?;
        if let Err(error) = self.compensate(id).await {
            tracing::warn!(order_id = %id, error = format!("{error:#}"), "refund and restock left to the saga");
        }
        Ok(answer)
    }
}
