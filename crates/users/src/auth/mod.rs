//! Credentials and tokens: the password and refresh-token grants, logout, the
//! brute-force lock, and revoking a user's refresh tokens.
//!
//! Refresh tokens are 256 random bits, stored only as their SHA-256 (they are random, so
//! a slow hash buys nothing), single use: each refresh marks the presented one used and
//! issues the next of the same family (one family per login). A used one presented again
//! is taken as theft: the whole family is revoked and the answer is `401`.

pub(crate) mod keys;
pub(crate) mod password;
mod purge;
pub(crate) mod tokens;

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::db::{self, DbContext, Pool};
use kernel::{Role, UserId};
use serde::Serialize;
use users_api::UserError;
use uuid::Uuid;

use crate::domain::Email;
use crate::schema::{login_failures, refresh_tokens, users};
use crate::service::stored_roles;
pub use keys::{Jwk, Jwks};
pub use purge::Purged;
pub use tokens::{TokenSettings, Tokens};

/// Failed logins of one email within [`LoginLock::window`] before it is locked.
pub const MAX_FAILURES: i64 = 5;

/// The brute-force lock: [`MAX_FAILURES`] failures per email within `window`.
#[derive(Clone, Debug)]
pub struct LoginLock {
    pub window: Duration,
}

impl Default for LoginLock {
    fn default() -> Self {
        LoginLock {
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// The answer of `POST /auth/token`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// An EdDSA JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// `Bearer`
    #[schema(examples("Bearer"))]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(examples(900))]
    pub expires_in: u64,
    /// Opaque, single use: exchange it once for the next pair.
    pub refresh_token: String,
}

/// Logins, refreshes and logouts over the users schema.
pub struct Auth {
    pool: Pool,
    tokens: Arc<Tokens>,
    lock: LoginLock,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = refresh_tokens)]
struct RefreshRow {
    id: Uuid,
    family_id: Uuid,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

fn hash_refresh(token: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

fn new_refresh_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow!("no randomness for a token"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Revokes every live refresh token of the user (deactivation, role or password change),
/// on the caller's transaction.
pub(crate) async fn revoke_all(conn: &mut AsyncPgConnection, user: Uuid) -> anyhow::Result<()> {
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::user_id.eq(user))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(Utc::now()))
    .execute(conn)
    .await
    .db_context("revoking refresh tokens")?;
    Ok(())
}

async fn revoke_family(conn: &mut AsyncPgConnection, family: Uuid) -> anyhow::Result<()> {
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::family_id.eq(family))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(Utc::now()))
    .execute(conn)
    .await
    .db_context("revoking a token family")?;
    Ok(())
}

/// What a refresh grant found, decided inside its transaction.
enum Refresh {
    Issued(TokenPair),
    Reused,
    Invalid,
}

impl Auth {
    pub fn new(pool: Pool, tokens: Arc<Tokens>, lock: LoginLock) -> Self {
        Auth { pool, tokens, lock }
    }

    pub fn tokens(&self) -> &Arc<Tokens> {
        &self.tokens
    }

    /// Issues a new pair, the refresh token in `family`.
    async fn pair(
        &self,
        conn: &mut AsyncPgConnection,
        user: Uuid,
        roles: &[Role],
        family: Uuid,
    ) -> Result<TokenPair, UserError> {
        let (access_token, expires_in) = self.tokens.issue(conn, UserId::from(user), roles).await?;
        let refresh_token = new_refresh_token()?;
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(self.tokens.settings.refresh_ttl)
            .unwrap_or(chrono::Duration::days(30));
        diesel::insert_into(refresh_tokens::table)
            .values((
                refresh_tokens::id.eq(Uuid::now_v7()),
                refresh_tokens::family_id.eq(family),
                refresh_tokens::user_id.eq(user),
                refresh_tokens::token_hash.eq(hash_refresh(&refresh_token)),
                refresh_tokens::created_at.eq(now),
                refresh_tokens::expires_at.eq(now + ttl),
            ))
            .execute(conn)
            .await
            .db_context("storing a refresh token")?;
        Ok(TokenPair {
            access_token,
            token_type: "Bearer",
            expires_in,
            refresh_token,
        })
    }

    /// The password grant. Wrong email, wrong password and inactive user are all
    /// `InvalidCredentials` after one password hash each; a locked email is
    /// `TooManyAttempts` whatever the password.
    #[tracing::instrument(name = "users.login", skip_all)]
    pub async fn login(&self, email: &str, password: String) -> Result<TokenPair, UserError> {
        // A malformed email has no user, but its attempts count all the same.
        let key = email.trim().to_lowercase();
        let email = Email::parse(email).map(|e| e.as_str().to_owned());
        let mut conn = db::connect(&self.pool).await?;
        self.claim_attempt(&mut conn, &key).await?;
        let user: Option<(Uuid, bool, Option<String>, Vec<String>)> = match &email {
            Ok(email) => users::table
                .filter(users::email.eq(email))
                .select((users::id, users::active, users::password_hash, users::roles))
                .first(&mut conn)
                .await
                .optional()
                .db_context("loading a user to log in")?,
            Err(_) => None,
        };
        let (id, active, hash, roles) = match user {
            Some((id, active, hash, roles)) => (Some(id), active, hash, roles),
            None => (None, false, None, Vec::new()),
        };
        // No connection is held while the password is hashed.
        drop(conn);
        let matches = password::verify(hash, password).await?;
        let mut conn = db::connect(&self.pool).await?;
        let (Some(id), true, true) = (id, matches, active) else {
            // The attempt claimed above stays as the failure.
            return Err(UserError::InvalidCredentials);
        };
        diesel::delete(login_failures::table.filter(login_failures::email.eq(&key)))
            .execute(&mut conn)
            .await
            .db_context("clearing failed logins")?;
        let roles = stored_roles(roles)?;
        let pair = self.pair(&mut conn, id, &roles, Uuid::now_v7()).await?;
        tracing::info!(user_id = %id, "logged in");
        Ok(pair)
    }

    /// Records the attempt as a failure before the password is checked (a success takes
    /// it back), so concurrent guesses count each other. `TooManyAttempts` (and the
    /// attempt is not counted) when [`MAX_FAILURES`] earlier ones are in the window.
    ///
    /// The claims of one email are serialized by a transaction-scoped advisory lock: with
    /// each claim committed on its own, a claim could count the earlier ones while an
    /// attempt with a lower id was inserted but not yet committed, and both would pass.
    async fn claim_attempt(
        &self,
        conn: &mut AsyncPgConnection,
        email: &str,
    ) -> Result<(), UserError> {
        let window = window(&self.lock);
        db::transaction(conn, async |conn| {
            db::prepared(
                diesel::sql_query(
                    "SELECT pg_advisory_xact_lock(hashtextextended('users.login:' || $1, 0))",
                )
                .bind::<diesel::sql_types::Text, _>(email),
            )
            .execute(conn)
            .await
            .db_context("locking an email's login attempts")?;
            let now = Utc::now();
            let since = now - window;
            diesel::delete(
                login_failures::table
                    .filter(login_failures::email.eq(email))
                    .filter(login_failures::failed_at.le(since)),
            )
            .execute(conn)
            .await
            .db_context("purging old failed logins")?;
            let earlier: Vec<DateTime<Utc>> = login_failures::table
                .filter(login_failures::email.eq(email))
                .filter(login_failures::failed_at.gt(since))
                .select(login_failures::failed_at)
                .order(login_failures::id.desc())
                .limit(MAX_FAILURES)
                .load(conn)
                .await
                .db_context("counting failed logins")?;
            if earlier.len() as i64 >= MAX_FAILURES {
                // Unlocked once the oldest of the last five leaves the window.
                let oldest = earlier.iter().min().copied().unwrap_or(now);
                let left = (oldest + window - Utc::now()).num_milliseconds();
                let seconds = u32::try_from((left.max(0) + 999) / 1000).unwrap_or(u32::MAX);
                return Err(UserError::TooManyAttempts(seconds.max(1)));
            }
            diesel::insert_into(login_failures::table)
                .values((
                    login_failures::email.eq(email),
                    login_failures::failed_at.eq(now),
                ))
                .execute(conn)
                .await
                .db_context("recording a login attempt")?;
            Ok(())
        })
        .await
    }

    /// The refresh-token grant: rotates the token; a reused one revokes its family.
    #[tracing::instrument(name = "users.refresh", skip_all)]
    pub async fn refresh(&self, token: &str) -> Result<TokenPair, UserError> {
        let hash = hash_refresh(token);
        let mut conn = db::connect(&self.pool).await?;
        let outcome = db::transaction(&mut conn, async |conn| {
            let row: Option<RefreshRow> = refresh_tokens::table
                .filter(refresh_tokens::token_hash.eq(&hash))
                .select(RefreshRow::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()
                .db_context("loading a refresh token")?;
            let Some(row) = row else {
                return Ok(Refresh::Invalid);
            };
            if row.revoked_at.is_some() || row.expires_at <= Utc::now() {
                return Ok(Refresh::Invalid);
            }
            if row.used_at.is_some() {
                revoke_family(conn, row.family_id).await?;
                return Ok(Refresh::Reused);
            }
            let user: Option<(bool, Vec<String>)> = users::table
                .find(row.user_id)
                .select((users::active, users::roles))
                .first(conn)
                .await
                .optional()
                .db_context("loading the user of a refresh token")?;
            let Some((true, roles)) = user else {
                revoke_family(conn, row.family_id).await?;
                return Ok(Refresh::Invalid);
            };
            diesel::update(refresh_tokens::table.find(row.id))
                .set(refresh_tokens::used_at.eq(Utc::now()))
                .execute(conn)
                .await
                .db_context("spending a refresh token")?;
            let roles = stored_roles(roles)?;
            let pair = self.pair(conn, row.user_id, &roles, row.family_id).await?;
            Ok::<_, UserError>(Refresh::Issued(pair))
        })
        .await?;
        match outcome {
            Refresh::Issued(pair) => Ok(pair),
            Refresh::Reused => {
                tracing::warn!("a spent refresh token was presented again; its family is revoked");
                Err(UserError::InvalidRefreshToken)
            }
            Refresh::Invalid => Err(UserError::InvalidRefreshToken),
        }
    }

    /// Logout: revokes the token's family. An unknown token changes nothing.
    #[tracing::instrument(name = "users.revoke", skip_all)]
    pub async fn revoke(&self, token: &str) -> Result<(), UserError> {
        let mut conn = db::connect(&self.pool).await?;
        let family: Option<Uuid> = refresh_tokens::table
            .filter(refresh_tokens::token_hash.eq(hash_refresh(token)))
            .select(refresh_tokens::family_id)
            .first(&mut conn)
            .await
            .optional()
            .db_context("loading a refresh token")?;
        if let Some(family) = family {
            revoke_family(&mut conn, family).await?;
        }
        Ok(())
    }
}

fn window(lock: &LoginLock) -> chrono::Duration {
    chrono::Duration::from_std(lock.window).unwrap_or(chrono::Duration::minutes(15))
}
