//! Placing an order, made crash-safe without publishing anything early: record the order as
//! `placing` (claiming its idempotency key), reserve its stock, then make it `pending` and
//! publish `order.created`. A placement that fails or is cut short is `abandoned`, its
//! reservation released (a release fences late reservations), then `rejected`; the sweeper
//! (`sweeper.rs`) finishes any that a crash left behind.

use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Numeric, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use kernel::db::{self, DbContext};
use kernel::{Money, NewEvent, OrderId, Validation};
use orders_api::{Accepted, MAX_ITEMS, MAX_QUANTITY, NewOrder, OrderError, OrderStatus, events};
use products_api::{ProductError, ReservationLine};
use uuid::Uuid;

use crate::SCHEMA;
use crate::commands::OrderCommandHandler;
use crate::schema::{idempotency_keys, orders};
use crate::state::State;

/// How long a request waits for another one still running with its idempotency key.
const KEY_IN_USE_WAIT: Duration = Duration::from_secs(5);

/// Raw: the order (`placing`, version 0) and its lines, numbered from 0, in one statement.
const RECORD: &str = "WITH recorded AS ( \
       INSERT INTO orders.orders (id, user_id, status, total, version, created_at, updated_at) \
       VALUES ($1, $2, $3, $4, 0, $5, $5)) \
     INSERT INTO orders.order_lines (order_id, line, product_id, product_name, quantity, price) \
     SELECT $1, (l.n - 1)::int, l.product_id, l.product_name, l.quantity, l.price \
     FROM unnest($6::uuid[], $7::text[], $8::bigint[], $9::numeric[]) WITH ORDINALITY \
       AS l(product_id, product_name, quantity, price, n)";

/// A line priced from the catalog, ready to be stored and published.
struct PricedLine {
    product_id: Uuid,
    product_name: String,
    quantity: i64,
    price: Money,
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
    /// The order is recorded as `placing`, its idempotency key (if any) claimed.
    Placing,
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
        if let Recorded::KeyTaken = self.record(id, &order, &lines, total, claim).await? {
            // A concurrent request with the same key won the claim: answer as it does.
            return match self
                .lookup_key(key.as_deref().unwrap_or_default(), &request)
                .await?
            {
                KeyLookup::Answered(answer) => Ok(answer),
                KeyLookup::Free => Err(OrderError::IdempotencyKeyInUse(key.unwrap_or_default())),
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
            e @ (ProductError::InsufficientStock { .. } | ProductError::UnknownProducts(_)) => {
                OrderError::Product(e)
            }
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
            });
        }
        let most = payments_api::max_charge();
        if total.amount() > most.amount() {
            return Err(OrderError::Invalid(vec![kernel::FieldError::new(
                "items",
                format!("the order's total {total} is over {most}, the most one payment charges"),
            )]));
        }
        Ok((user, lines, total))
    }

    /// Looks up an idempotency key: a replay answers the first answer; a key in use by a
    /// request still running is waited for (bounded); a key of a failed request is free.
    async fn lookup_key(
        &self,
        key: &str,
        request: &serde_json::Value,
    ) -> Result<KeyLookup, OrderError> {
        let deadline = tokio::time::Instant::now() + KEY_IN_USE_WAIT;
        loop {
            let mut conn = db::connect(&self.pool).await?;
            // A key older than the TTL is forgotten, whether or not the sweeper got to it.
            let forgotten = Utc::now() - ttl(self.idempotency_ttl);
            diesel::delete(
                idempotency_keys::table
                    .find(key)
                    .filter(idempotency_keys::created_at.lt(forgotten)),
            )
            .execute(&mut conn)
            .await
            .db_context("forgetting an expired idempotency key")?;
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
                None => return Ok(KeyLookup::Free),
                Some((first, _)) if first != *request => {
                    return Err(OrderError::IdempotencyKeyReused(key.to_owned()));
                }
                Some((_, Some(response))) => {
                    let accepted = serde_json::from_value(response)
                        .map_err(|e| anyhow::anyhow!("stored answer: {e}"))?;
                    return Ok(KeyLookup::Answered(accepted));
                }
                Some((_, None)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Some((_, None)) => return Err(OrderError::IdempotencyKeyInUse(key.to_owned())),
            }
        }
    }

    /// Refuses a placement that would give the user more than `max_pending_orders`
    /// pending (or still placing) orders. Placements of one user take a transaction-scoped
    /// advisory lock first, so concurrent ones count one after the other.
    async fn within_pending_limit(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        user_id: kernel::UserId,
    ) -> Result<(), OrderError> {
        #[derive(diesel::QueryableByName)]
        struct Held {
            #[diesel(sql_type = BigInt)]
            held: i64,
        }
        // The lock first, then the count in a statement of its own: a statement's
        // snapshot is taken when it starts, so a count in the locking statement would not
        // see the placement it waited for.
        kernel::db::prepared(
            diesel::sql_query(
                "SELECT pg_advisory_xact_lock(hashtextextended('orders.pending:' || $1::text, 0))",
            )
            .bind::<SqlUuid, _>(user_id.as_uuid()),
        )
        .execute(conn)
        .await
        .db_context("locking the user's placements")?;
        let held: Held = kernel::db::prepared(
            diesel::sql_query(
                "SELECT count(*) AS held FROM orders.orders \
             WHERE user_id = $1 AND status IN ('placing', 'pending')",
            )
            .bind::<SqlUuid, _>(user_id.as_uuid()),
        )
        .get_result(conn)
        .await
        .db_context("counting the user's pending orders")?;
        if held.held >= i64::from(self.max_pending_orders) {
            return Err(OrderError::TooManyPendingOrders {
                user_id,
                max: self.max_pending_orders,
            });
        }
        Ok(())
    }

    /// Records the order as `placing`, claiming the idempotency key first in the same
    /// transaction (a key another request holds records nothing).
    async fn record(
        &self,
        id: OrderId,
        order: &NewOrder,
        lines: &[PricedLine],
        total: Money,
        key: Option<(&str, &serde_json::Value)>,
    ) -> Result<Recorded, OrderError> {
        let mut conn = db::connect(&self.pool).await?;
        db::transaction(&mut conn, async |conn| {
            let now = Utc::now();
            if let Some((key, request)) = key {
                // Waits for a concurrent claim of the same key to commit or roll back.
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
                    return Ok(Recorded::KeyTaken);
                }
            }
            self.within_pending_limit(conn, order.user_id).await?;
            let (mut products, mut names, mut quantities, mut prices) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for line in lines {
                products.push(line.product_id);
                names.push(line.product_name.as_str());
                quantities.push(line.quantity);
                prices.push(line.price.amount());
            }
            db::prepared(
                diesel::sql_query(RECORD)
                    .bind::<SqlUuid, _>(id.as_uuid())
                    .bind::<SqlUuid, _>(order.user_id.as_uuid())
                    .bind::<Text, _>(State::Placing)
                    .bind::<Numeric, _>(total.amount())
                    .bind::<Timestamptz, _>(now)
                    .bind::<Array<SqlUuid>, _>(products)
                    .bind::<Array<Text>, _>(names)
                    .bind::<Array<BigInt>, _>(quantities)
                    .bind::<Array<Numeric>, _>(prices),
            )
            .execute(conn)
            .await
            .db_context("recording order")?;
            Ok(Recorded::Placing)
        })
        .await
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
                    .filter(orders::status.eq(State::Placing)),
            )
            .set((
                orders::status.eq(State::PENDING),
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
    /// placements a crash interrupted. Only a placement that is `abandoned` (by this call,
    /// or by one cut short before it released) is released: one published meanwhile is a
    /// live `pending` order whose reservation is its own, and is left alone. Answers
    /// whether it released the placement.
    pub(crate) async fn abandon(&self, id: OrderId) -> anyhow::Result<bool> {
        let mut conn = db::connect(&self.pool).await?;
        let abandoned = diesel::update(
            orders::table
                .find(id.as_uuid())
                .filter(orders::status.eq(State::Placing)),
        )
        .set((
            orders::status.eq(State::Abandoned),
            orders::updated_at.eq(Utc::now()),
        ))
        .execute(&mut conn)
        .await
        .db_context("abandoning placement")?;
        if abandoned == 0 {
            // No longer placing: published, already rejected, or abandoned earlier.
            let state: Option<State> = orders::table
                .find(id.as_uuid())
                .select(orders::status)
                .first(&mut conn)
                .await
                .optional()
                .db_context("loading an abandoned placement")?;
            if state != Some(State::Abandoned) {
                return Ok(false);
            }
        }
        match self.deps.products.release(id).await {
            Ok(()) | Err(ProductError::ReservationClosed { .. }) => {}
            Err(e) => return Err(anyhow::anyhow!(e).context("releasing an abandoned placement")),
        }
        db::transaction(&mut conn, async |conn| {
            diesel::update(
                orders::table
                    .find(id.as_uuid())
                    .filter(orders::status.eq(State::Abandoned)),
            )
            .set((
                orders::status.eq(State::Rejected),
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
        .await?;
        Ok(true)
    }
}
