//! Placing an order: one transaction claims its idempotency key, counts the user's pending
//! orders, records the order as `pending` with its lines and `order.created`, and holds
//! its stock through the products module, in that transaction (`ProductApi::reserve` on a
//! `kernel::db::Unit`, under the products module's role). It commits whole or not at all:
//! a crash at any point leaves nothing to finish or undo, a placement that fails (no stock,
//! an unknown product, the pending limit) leaves no row behind, and one commit suffices.

use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Jsonb, Numeric, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use kernel::db::{self, DbContext, Unit};
use kernel::{Money, NewEvent, OrderId, Validation};
use orders_api::{Accepted, MAX_ITEMS, MAX_QUANTITY, NewOrder, OrderError, OrderStatus, events};
use products_api::{ProductError, ReservationLine};
use uuid::Uuid;

use crate::SCHEMA;
use crate::commands::OrderCommandHandler;
use crate::schema::idempotency_keys;
use crate::state::State;

/// Raw: the order (`pending`, version 1) and its lines, numbered from 0, in one statement,
/// unless the user already holds `$10` pending orders: then nothing is written (no line
/// inserted). It runs after the user's placements lock (see `lock_user`), so its snapshot
/// sees every placement of the user that committed before it.
const RECORD: &str = "WITH held AS ( \
       SELECT count(*) AS n FROM orders.orders WHERE user_id = $2 AND status = 'pending'), \
     recorded AS ( \
       INSERT INTO orders.orders (id, user_id, status, total, version, created_at, updated_at) \
       SELECT $1, $2, $3, $4, 1, $5, $5 FROM held WHERE held.n < $10 RETURNING id) \
     INSERT INTO orders.order_lines (order_id, line, product_id, product_name, quantity, price) \
     SELECT recorded.id, (l.n - 1)::int, l.product_id, l.product_name, l.quantity, l.price \
     FROM recorded, unnest($6::uuid[], $7::text[], $8::bigint[], $9::numeric[]) WITH ORDINALITY \
       AS l(product_id, product_name, quantity, price, n)";

/// Raw: claims an idempotency key with its answer; a key past its TTL is taken over (as
/// if the sweeper had deleted it). Writes no row when the key is held: one row written
/// means claimed. A concurrent claim of the same key waits for this one's transaction.
const CLAIM: &str = "INSERT INTO orders.idempotency_keys AS k \
       (key, request, order_id, response, created_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (key) DO UPDATE SET request = EXCLUDED.request, order_id = EXCLUDED.order_id, \
       response = EXCLUDED.response, created_at = EXCLUDED.created_at \
     WHERE k.created_at < $6";

/// A line priced from the catalog, ready to be stored and published.
struct PricedLine {
    product_id: Uuid,
    product_name: String,
    quantity: i64,
    price: Money,
    subtotal: Money,
}

/// `ttl` as a span of time (a TTL beyond what chrono spans is a century).
pub(crate) fn ttl(ttl: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::days(36_500))
}

/// An idempotency key, as a new request finds it.
enum KeyLookup {
    /// Unused (or freed by a failed request): go on.
    Free,
    /// Used for this same request, which succeeded: its answer.
    Answered(Accepted),
}

/// What recording a placement did.
enum Recorded {
    /// The order is placed (once the transaction commits): the answer.
    Placed(Accepted),
    /// A concurrent request claimed the idempotency key first; nothing was recorded.
    KeyTaken,
}

fn validate(order: &NewOrder) -> Result<(), OrderError> {
    let mut validation = Validation::default();
    if order.items.is_empty() || order.items.len() > MAX_ITEMS {
        validation.push(
            "items",
            format!(
                "must hold 1 to {MAX_ITEMS} lines, got {}",
                order.items.len()
            ),
        );
    }
    for (i, line) in order.items.iter().enumerate() {
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            validation.push(
                &format!("items[{i}].quantity"),
                format!("must be 1 to {MAX_QUANTITY}, got {}", line.quantity),
            );
        }
        if order.items[..i]
            .iter()
            .any(|other| other.product_id == line.product_id)
        {
            validation.push(
                &format!("items[{i}].product_id"),
                format!("product {} is already in the order", line.product_id),
            );
        }
    }
    validation.finish().map_err(OrderError::Invalid)
}

impl OrderCommandHandler {
    pub(crate) async fn place_order(
        &self,
        order: NewOrder,
        key: Option<String>,
    ) -> Result<Accepted, OrderError> {
        validate(&order)?;
        let request = serde_json::to_value(&order).map_err(anyhow::Error::from)?;
        if let Some(key) = &key
            && let KeyLookup::Answered(answer) = self.lookup_key(key, &request).await?
        {
            return Ok(answer);
        }
        let (user, lines, total) = self.price(&order).await?;
        let id = OrderId::generate();
        let claim = key.as_deref().map(|k| (k, &request));
        match self.record(id, &order, user, lines, total, claim).await? {
            Recorded::Placed(answer) => {
                tracing::info!(order_id = %answer.order_id, "order placed");
                Ok(answer)
            }
            // A concurrent request with the same key won the claim: answer as it does.
            Recorded::KeyTaken => match self
                .lookup_key(key.as_deref().unwrap_or_default(), &request)
                .await?
            {
                KeyLookup::Answered(answer) => Ok(answer),
                // Forgotten (past its TTL) between the claim and the look-up.
                KeyLookup::Free => Err(OrderError::IdempotencyKeyInUse(key.unwrap_or_default())),
            },
        }
    }

    /// Checks the user, prices every line from the catalog, totals exactly.
    async fn price(
        &self,
        order: &NewOrder,
    ) -> Result<(users_api::User, Vec<PricedLine>, Money), OrderError> {
        let user = self.active_user(order.user_id).await?;
        let ids: Vec<_> = order.items.iter().map(|l| l.product_id).collect();
        let products = self.deps.products.lookup(&ids).await.map_err(|e| match e {
            e @ ProductError::UnknownProducts(_) => OrderError::Product(e),
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
            lines.push(PricedLine {
                product_id: product.id.as_uuid(),
                product_name: product.name,
                quantity: line.quantity,
                price: product.price,
                subtotal,
            });
        }
        let most = payments_api::max_charge();
        if total.amount() > most.amount() {
            return Err(OrderError::TotalTooLarge { total, most });
        }
        Ok((user, lines, total))
    }

    /// Looks up an idempotency key: a replay answers the first answer; a key used with
    /// another request is refused. A key is written with its answer, in the transaction of
    /// the placement it answers, so a key in use by a request still running is not seen
    /// here: that request's claim makes this one's wait for it (see [`Self::record`]).
    async fn lookup_key(
        &self,
        key: &str,
        request: &serde_json::Value,
    ) -> Result<KeyLookup, OrderError> {
        let mut conn = db::connect(&self.pool).await?;
        // A key older than the TTL is forgotten, whether or not the sweeper got to it.
        let forgotten = Utc::now() - ttl(self.idempotency_ttl);
        let found: Option<(serde_json::Value, serde_json::Value)> = idempotency_keys::table
            .find(key)
            .filter(idempotency_keys::created_at.ge(forgotten))
            .select((idempotency_keys::request, idempotency_keys::response))
            .first(&mut conn)
            .await
            .optional()
            .db_context("looking up idempotency key")?;
        match found {
            None => Ok(KeyLookup::Free),
            Some((first, _)) if first != *request => {
                Err(OrderError::IdempotencyKeyReused(key.to_owned()))
            }
            Some((_, response)) => {
                let accepted = serde_json::from_value(response)
                    .map_err(|e| anyhow::anyhow!("stored answer: {e}"))?;
                Ok(KeyLookup::Answered(accepted))
            }
        }
    }

    /// Takes the transaction-scoped advisory lock of the user's placements, so that
    /// concurrent ones count the user's pending orders (`RECORD`) one after the other. The
    /// count is a statement of its own, after this one: a statement's snapshot is taken
    /// when it starts, so a count in the locking statement would not see the placement it
    /// waited for. The same statement puts the rest of the transaction on generic plans
    /// (`plan_cache_mode`, ARCHITECTURE.md "Generic plans"): its statements take their
    /// lines as arrays, and Postgres would plan each of them again at every execution.
    async fn lock_user(
        conn: &mut diesel_async::AsyncPgConnection,
        user_id: kernel::UserId,
    ) -> Result<(), OrderError> {
        kernel::db::prepared(
            diesel::sql_query(
                "SELECT pg_advisory_xact_lock(hashtextextended('orders.pending:' || $1::text, 0)), \
                 set_config('plan_cache_mode', 'force_generic_plan', true)",
            )
            .bind::<SqlUuid, _>(user_id.as_uuid()),
        )
        .execute(conn)
        .await
        .db_context("locking the user's placements")?;
        Ok(())
    }

    /// The placement's one transaction: claims the idempotency key (with its answer), checks
    /// the pending limit, records the order, its lines and `order.created`, and reserves
    /// the stock. A key another request holds records nothing; any failure rolls it all
    /// back.
    async fn record(
        &self,
        id: OrderId,
        order: &NewOrder,
        user: users_api::User,
        lines: Vec<PricedLine>,
        total: Money,
        key: Option<(&str, &serde_json::Value)>,
    ) -> Result<Recorded, OrderError> {
        let answer = Accepted {
            order_id: id,
            status: OrderStatus::Pending,
            version: 1,
        };
        let reservation: Vec<ReservationLine> = lines
            .iter()
            .map(|l| ReservationLine {
                product_id: l.product_id.into(),
                quantity: l.quantity as u32,
            })
            .collect();
        let (mut products, mut names, mut quantities, mut prices) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for line in &lines {
            products.push(line.product_id);
            names.push(line.product_name.clone());
            quantities.push(line.quantity);
            prices.push(line.price.amount());
        }
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
                    subtotal: l.subtotal,
                })
                .collect(),
            total,
        };
        let mut conn = db::connect(&self.pool).await?;
        db::transaction(&mut conn, async |conn| {
            let now = Utc::now();
            if let Some((key, request)) = key {
                let response = serde_json::to_value(answer).map_err(anyhow::Error::from)?;
                let forgotten = now - ttl(self.idempotency_ttl);
                let claimed = db::prepared(
                    diesel::sql_query(CLAIM)
                        .bind::<Text, _>(key)
                        .bind::<Jsonb, _>(request)
                        .bind::<SqlUuid, _>(id.as_uuid())
                        .bind::<Jsonb, _>(&response)
                        .bind::<Timestamptz, _>(now)
                        .bind::<Timestamptz, _>(forgotten),
                )
                .execute(conn)
                .await
                .db_context("claiming idempotency key")?;
                if claimed == 0 {
                    return Ok(Recorded::KeyTaken);
                }
            }
            Self::lock_user(conn, order.user_id).await?;
            let recorded = db::prepared(
                diesel::sql_query(RECORD)
                    .bind::<SqlUuid, _>(id.as_uuid())
                    .bind::<SqlUuid, _>(order.user_id.as_uuid())
                    .bind::<Text, _>(State::PENDING)
                    .bind::<Numeric, _>(total.amount())
                    .bind::<Timestamptz, _>(now)
                    .bind::<Array<SqlUuid>, _>(&products)
                    .bind::<Array<Text>, _>(&names)
                    .bind::<Array<BigInt>, _>(&quantities)
                    .bind::<Array<Numeric>, _>(&prices)
                    .bind::<BigInt, _>(i64::from(self.max_pending_orders)),
            )
            .execute(conn)
            .await
            .db_context("recording order")?;
            if recorded == 0 {
                return Err(OrderError::TooManyPendingOrders {
                    user_id: order.user_id,
                    max: self.max_pending_orders,
                });
            }
            eventlog::append(
                conn,
                SCHEMA.name,
                &[NewEvent::new(events::ORDER_CREATED, id, 1, &created)],
            )
            .await?;
            // Last, so the products' rows stay locked for as short a time as can be.
            let mut unit = Unit::new(conn, &SCHEMA);
            self.deps
                .products
                .reserve(&mut unit, id, &reservation)
                .await
                .map_err(|e| match e {
                    e @ (ProductError::InsufficientStock { .. }
                    | ProductError::UnknownProducts(_)) => OrderError::Product(e),
                    e => OrderError::Unexpected(anyhow::anyhow!(e).context("reserving stock")),
                })?;
            self.fault("after_reserve")?;
            Ok(Recorded::Placed(answer))
        })
        .await
    }
}
