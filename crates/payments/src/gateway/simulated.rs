//! The built-in gateway: no network, decided by the token, with a ledger of its own.
//!
//! It stands for an external system and behaves like one. Its ledger is schema `gateway`
//! (role `emporium_gateway`, its own pool, migrations in `migrations/gateway/`), written
//! each time in a transaction of its own and never in the caller's, so across any crash
//! of ours it remembers what it charged. It knows nothing of the payments module's tables.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use kernel::db::text::{from_text, to_text};
use kernel::db::{self, Pool};
use kernel::{Money, PaymentId};
use payments_api::tokens;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::schema::ledger;
use super::{ChargeState, GatewayError, GatewayReceipt, PaymentGateway};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/gateway");

/// The simulated gateway's schema: its ledger, and nothing of any module. Not a module's
/// schema (it keeps no event log); the app migrates it and gives the gateway its pool.
pub const GATEWAY_SCHEMA: kernel::db::Schema = kernel::db::Schema {
    name: "gateway",
    migrations: &[&MIGRATIONS],
};

/// How the simulated gateway behaves.
#[derive(Clone, Copy, Debug)]
pub struct SimulatedSettings {
    /// How long `tok_timeout` and `tok_timeout_failed` take to answer: longer than the
    /// caller's deadline (`PAYMENT_GATEWAY_TIMEOUT`), so the caller gives up first.
    pub slow_answer: Duration,
}

impl Default for SimulatedSettings {
    fn default() -> Self {
        SimulatedSettings {
            slow_answer: Duration::from_secs(20),
        }
    }
}

/// The built-in gateway, decided by the token:
///
/// | token | what it does | answer |
/// |---|---|---|
/// | `tok_visa` | charges | at once, a receipt |
/// | `tok_declined` | takes nothing | at once, declined ("card declined") |
/// | `tok_gateway_error` | takes nothing | at once, a gateway failure |
/// | `tok_timeout` | charges | a receipt, after [`SimulatedSettings::slow_answer`] |
/// | `tok_timeout_failed` | takes nothing | a gateway failure, after the same delay |
/// | any other | nothing, records nothing | at once, an unknown token |
///
/// Every outcome but the last is written to the ledger under the key before it answers, so
/// a [`PaymentGateway::lookup`] during the delay already knows it. Asked again with a key
/// it knows, it answers the first outcome and charges nothing; a key voided first
/// ([`PaymentGateway::void`]: a tombstone in the ledger) answers every charge
/// [`GatewayError::Voided`] and takes nothing. Refunds give back a charge once. It also counts the charges and refunds this instance performed, so tests can prove
/// a payment was taken exactly once.
pub struct SimulatedGateway {
    pool: Pool,
    settings: SimulatedSettings,
    charges: AtomicUsize,
    refunds: AtomicUsize,
}

impl SimulatedGateway {
    /// The gateway over `pool`, a pool of [`GATEWAY_SCHEMA`].
    pub fn new(pool: Pool, settings: SimulatedSettings) -> Self {
        SimulatedGateway {
            pool,
            settings,
            charges: AtomicUsize::new(0),
            refunds: AtomicUsize::new(0),
        }
    }

    /// Money taken so far by this instance (a repeated key takes nothing).
    pub fn charges(&self) -> usize {
        AtomicUsize::load(&self.charges, Ordering::SeqCst)
    }

    /// Refunds so far by this instance (a repeated refund gives nothing back).
    pub fn refunds(&self) -> usize {
        AtomicUsize::load(&self.refunds, Ordering::SeqCst)
    }

    async fn connect(&self) -> Result<db::Connection, GatewayError> {
        db::connect(&self.pool).await.map_err(unavailable)
    }

    /// Writes `entry` unless the key is known, in a transaction of its own (one statement);
    /// returns the entry the ledger holds for the key: this one, or the first.
    async fn record(&self, entry: Entry) -> Result<Entry, GatewayError> {
        let mut conn = self.connect().await?;
        let inserted = diesel::insert_into(ledger::table)
            .values(&entry)
            .on_conflict_do_nothing()
            .returning(Entry::as_returning())
            .get_result(&mut conn)
            .await
            .optional()
            .map_err(indeterminate)?;
        match inserted {
            Some(entry) => {
                if entry.outcome == LedgerOutcome::Charged {
                    self.charges.fetch_add(1, Ordering::SeqCst);
                }
                Ok(entry)
            }
            None => ledger::table
                .find(entry.key)
                .select(Entry::as_select())
                .first(&mut conn)
                .await
                .map_err(indeterminate),
        }
    }

    async fn find(&self, key: PaymentId) -> Result<Option<Entry>, GatewayError> {
        let mut conn = self.connect().await?;
        ledger::table
            .find(key.as_uuid())
            .select(Entry::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(unavailable)
    }
}

/// A write to the ledger that failed may still have committed (its answer lost): to the
/// caller, the outcome is unknown until it asks by key.
fn indeterminate(error: impl std::fmt::Display) -> GatewayError {
    GatewayError::Indeterminate(format!("simulated gateway's ledger: {error}"))
}

/// The ledger could not be reached (nothing was written): to the caller, the gateway
/// failed.
fn unavailable(error: impl std::fmt::Display) -> GatewayError {
    GatewayError::Unavailable(format!("simulated gateway's ledger: {error}"))
}

/// What the simulated gateway's ledger holds for a key (`gateway.ledger.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum LedgerOutcome {
    /// The money was taken.
    Charged,
    /// The card was refused; nothing taken.
    Declined,
    /// The gateway failed; nothing taken.
    Failed,
    /// The money was taken and given back.
    Refunded,
    /// The key was voided before any charge under it: nothing taken, nor ever will be.
    Voided,
}

impl LedgerOutcome {
    pub const ALL: [LedgerOutcome; 5] = [
        LedgerOutcome::Charged,
        LedgerOutcome::Declined,
        LedgerOutcome::Failed,
        LedgerOutcome::Refunded,
        LedgerOutcome::Voided,
    ];

    /// Its one spelling (besides the `CHECK` of migrations/gateway).
    pub fn as_str(&self) -> &'static str {
        match self {
            LedgerOutcome::Charged => "charged",
            LedgerOutcome::Declined => "declined",
            LedgerOutcome::Failed => "failed",
            LedgerOutcome::Refunded => "refunded",
            LedgerOutcome::Voided => "voided",
        }
    }
}

impl std::str::FromStr for LedgerOutcome {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        LedgerOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == text)
            .ok_or_else(|| format!("unknown ledger outcome {text:?}"))
    }
}

impl ToSql<Text, Pg> for LedgerOutcome {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        to_text(self.as_str(), out)
    }
}

impl FromSql<Text, Pg> for LedgerOutcome {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        from_text(bytes)
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = ledger)]
struct Entry {
    key: Uuid,
    /// None for a void (which knows no amount), else the charge's.
    amount: Option<Decimal>,
    outcome: LedgerOutcome,
    reference: String,
    reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Entry {
    fn state(self) -> ChargeState {
        let receipt = GatewayReceipt {
            reference: self.reference,
        };
        let reason = self.reason.unwrap_or_default();
        match self.outcome {
            LedgerOutcome::Charged => ChargeState::Charged(receipt),
            LedgerOutcome::Refunded => ChargeState::Refunded(receipt),
            LedgerOutcome::Declined => ChargeState::Declined(reason),
            LedgerOutcome::Failed => ChargeState::Failed(reason),
            LedgerOutcome::Voided => ChargeState::Voided,
        }
    }

    /// The answer to a charge under this entry's key.
    fn answer(self) -> Result<GatewayReceipt, GatewayError> {
        let key = self.key;
        match self.state() {
            ChargeState::Charged(receipt) | ChargeState::Refunded(receipt) => Ok(receipt),
            ChargeState::Declined(reason) => Err(GatewayError::Declined(reason)),
            ChargeState::Failed(reason) => Err(GatewayError::Unavailable(reason)),
            ChargeState::Voided => Err(GatewayError::Voided(format!(
                "the key {key} was voided before this charge; nothing was taken"
            ))),
            ChargeState::Unknown => unreachable!("an entry is never unknown"),
        }
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn charge(
        &self,
        payment_id: PaymentId,
        amount: Money,
        token: &str,
    ) -> Result<GatewayReceipt, GatewayError> {
        let (outcome, reason, slow) = match token {
            tokens::VISA => (LedgerOutcome::Charged, None, false),
            tokens::TIMEOUT => (LedgerOutcome::Charged, None, true),
            tokens::DECLINED => (LedgerOutcome::Declined, Some("card declined"), false),
            tokens::GATEWAY_ERROR => (
                LedgerOutcome::Failed,
                Some("simulated gateway error"),
                false,
            ),
            tokens::TIMEOUT_FAILED => (
                LedgerOutcome::Failed,
                Some("simulated gateway timeout"),
                true,
            ),
            // The reason only: the payments service names the token.
            _ => return Err(GatewayError::InvalidToken("unknown token".to_owned())),
        };
        let now = Utc::now();
        let entry = self
            .record(Entry {
                key: payment_id.as_uuid(),
                amount: Some(amount.amount()),
                outcome,
                reference: reference(payment_id),
                reason: reason.map(str::to_owned),
                created_at: now,
                updated_at: now,
            })
            .await?;
        if slow {
            // The simulation of a gateway that does not answer in time; never in a test.
            tokio::time::sleep(self.settings.slow_answer).await;
        }
        entry.answer()
    }

    async fn refund(&self, payment_id: PaymentId, _amount: Money) -> Result<(), GatewayError> {
        let key = payment_id.as_uuid();
        let refunded = {
            let mut conn = self.connect().await?;
            diesel::update(
                ledger::table
                    .find(key)
                    .filter(ledger::outcome.eq(LedgerOutcome::Charged)),
            )
            .set((
                ledger::outcome.eq(LedgerOutcome::Refunded),
                ledger::updated_at.eq(Utc::now()),
            ))
            .execute(&mut conn)
            .await
            .map_err(indeterminate)?
        };
        if refunded == 1 {
            self.refunds.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
        match self.find(payment_id).await?.map(Entry::state) {
            Some(ChargeState::Refunded(_)) => Ok(()),
            None => Err(GatewayError::NotCharged(format!(
                "no charge under key {payment_id}"
            ))),
            Some(ChargeState::Declined(_) | ChargeState::Failed(_) | ChargeState::Voided) => Err(
                GatewayError::NotCharged(format!("the charge under key {payment_id} took nothing")),
            ),
            Some(ChargeState::Charged(_) | ChargeState::Unknown) => Err(GatewayError::Unavailable(
                format!("the refund under key {payment_id} raced another; retry"),
            )),
        }
    }

    async fn lookup(&self, payment_id: PaymentId) -> Result<ChargeState, GatewayError> {
        Ok(self
            .find(payment_id)
            .await?
            .map_or(ChargeState::Unknown, Entry::state))
    }

    /// The tombstone is one `INSERT ... ON CONFLICT DO NOTHING` in a transaction of its
    /// own, as a charge's entry is: whichever of a charge and a void reaches the ledger
    /// first owns the key, across any number of instances, and the other answers it.
    async fn void(&self, payment_id: PaymentId) -> Result<ChargeState, GatewayError> {
        let now = Utc::now();
        let entry = self
            .record(Entry {
                key: payment_id.as_uuid(),
                amount: None,
                outcome: LedgerOutcome::Voided,
                reference: reference(payment_id),
                reason: Some("voided by the caller".to_owned()),
                created_at: now,
                updated_at: now,
            })
            .await?;
        Ok(entry.state())
    }
}

/// The gateway's own id for what it did under `key`.
fn reference(key: PaymentId) -> String {
    format!("sim_ch_{}", key.as_uuid().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip() {
        for outcome in LedgerOutcome::ALL {
            assert_eq!(outcome.as_str().parse::<LedgerOutcome>().unwrap(), outcome);
        }
        assert!("lost".parse::<LedgerOutcome>().is_err());
    }
}
