//! Access tokens: EdDSA JWTs with `kid`, `iss`, `aud` (`emporium`), `sub`, `roles`,
//! `iat`, `exp`, `jti`; and their verification, [`kernel::auth::TokenVerifier`].
//!
//! A verified token is cached until its `exp` (bounded, [`CACHE_CAPACITY`]), so the hot
//! read path pays one signature check per token, not per request. A token whose `kid` this
//! instance does not know makes it reload the keys from the database, at most once per
//! [`RELOAD_EVERY`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use async_trait::async_trait;
use diesel_async::AsyncPgConnection;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use kernel::auth::{TokenError, TokenVerifier};
use kernel::db::{self, Pool};
use kernel::{Principal, Role, UserId};
use serde::{Deserialize, Serialize};

use super::keys::{self, Jwks, KeySet};

/// The `aud` of every access token.
pub const AUDIENCE: &str = "emporium";
/// The `iss` of every access token.
pub const ISSUER: &str = "emporium";
/// Verified tokens kept at most.
pub(crate) const CACHE_CAPACITY: usize = 50_000;
/// Unknown `kid`s reload the keys at most this often.
pub(crate) const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// Where the signing keys come from, and token lifetimes.
#[derive(Clone, Debug)]
pub struct TokenSettings {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// `AUTH_SIGNING_KEY_FILE`; else keys kept in the database.
    pub key_file: Option<PathBuf>,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            key_file: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: UserId,
    roles: Vec<Role>,
    iat: u64,
    exp: u64,
    jti: String,
}

/// Issues and verifies access tokens.
pub struct Tokens {
    pool: Pool,
    pub(crate) settings: TokenSettings,
    keys: RwLock<Arc<KeySet>>,
    last_reload: Mutex<Instant>,
    cache: quick_cache::sync::Cache<String, (Principal, u64)>,
    validation: Validation,
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

impl Tokens {
    /// Loads the keys (from the file, or the database, generating the first one).
    pub async fn start(pool: Pool, settings: TokenSettings) -> anyhow::Result<Arc<Tokens>> {
        let keys = match &settings.key_file {
            Some(path) => keys::from_file(path)?,
            None => keys::ensure(&pool, settings.access_ttl).await?,
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 0;
        Ok(Arc::new(Tokens {
            pool,
            settings,
            keys: RwLock::new(Arc::new(keys)),
            last_reload: Mutex::new(Instant::now()),
            cache: quick_cache::sync::Cache::new(CACHE_CAPACITY),
            validation,
        }))
    }

    fn keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn reload(&self, conn: &mut AsyncPgConnection) -> anyhow::Result<()> {
        if self.settings.key_file.is_some() {
            return Ok(());
        }
        let keys = keys::load(conn, self.settings.access_ttl).await?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(())
    }

    /// The public keys, as `/.well-known/jwks.json` serves them.
    pub async fn jwks(&self) -> anyhow::Result<Jwks> {
        if self.settings.key_file.is_none() {
            let mut conn = db::connect(&self.pool).await?;
            self.follow_rotation(&mut conn).await?;
        }
        Ok(self.keys().jwks())
    }

    /// Reloads the keys if the database has a newer one than this instance signs with
    /// (one small query; only token issuing and the JWKS call it, not verification), on
    /// the caller's connection.
    async fn follow_rotation(&self, conn: &mut AsyncPgConnection) -> anyhow::Result<()> {
        if self.settings.key_file.is_some() {
            return Ok(());
        }
        let newest = keys::newest_kid(conn).await?;
        if newest.is_some_and(|kid| kid != self.keys().signing_kid) {
            self.reload(conn).await?;
        }
        Ok(())
    }

    /// A new access token for the user and its lifetime in seconds; `conn` serves to
    /// check for a newer signing key.
    pub(crate) async fn issue(
        &self,
        conn: &mut AsyncPgConnection,
        user: UserId,
        roles: &[Role],
    ) -> anyhow::Result<(String, u64)> {
        self.follow_rotation(conn).await?;
        let keys = self.keys();
        let iat = now();
        let ttl = self.settings.access_ttl.as_secs().max(1);
        let claims = Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: user,
            roles: roles.to_vec(),
            iat,
            exp: iat + ttl,
            jti: uuid::Uuid::now_v7().to_string(),
        };
        let header = Header {
            kid: Some(keys.signing_kid.clone()),
            ..Header::new(Algorithm::EdDSA)
        };
        let token = jsonwebtoken::encode(&header, &claims, &keys.signing)
            .map_err(|e| anyhow!("signing an access token: {e}"))?;
        Ok((token, ttl))
    }

    /// Whether this instance may reload the keys now (at most once per [`RELOAD_EVERY`]).
    fn may_reload(&self) -> bool {
        let mut last = self.last_reload.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= RELOAD_EVERY {
            *last = Instant::now();
            true
        } else {
            false
        }
    }

    async fn verify_uncached(&self, token: &str) -> Result<(Principal, u64), TokenError> {
        let invalid = |why: &str| TokenError::Invalid(why.to_owned());
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| invalid("not a well-formed JWT"))?;
        let kid = header.kid.ok_or_else(|| invalid("the token has no kid"))?;
        let mut keys = self.keys();
        if keys.find(&kid).is_none() && self.may_reload() {
            let mut conn = db::connect(&self.pool).await?;
            self.reload(&mut conn).await?;
            keys = self.keys();
        }
        let key = keys
            .find(&kid)
            .ok_or_else(|| invalid("the token is signed by an unknown key"))?;
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => invalid("the token has expired"),
                ErrorKind::InvalidAudience => invalid("the token is for another audience"),
                ErrorKind::InvalidIssuer => invalid("the token is from another issuer"),
                ErrorKind::InvalidSignature => invalid("the signature does not verify"),
                ErrorKind::InvalidAlgorithm => invalid("the token is not signed with EdDSA"),
                _ => invalid("the token's claims are malformed"),
            },
        )?;
        let claims = data.claims;
        let principal = Principal::User {
            id: claims.sub,
            roles: claims.roles,
        };
        Ok((principal, claims.exp))
    }
}

#[async_trait]
impl TokenVerifier for Tokens {
    async fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        if let Some((principal, exp)) = self.cache.get(token) {
            if exp > now() {
                return Ok(principal);
            }
            self.cache.remove(token);
            return Err(TokenError::Invalid("the token has expired".to_owned()));
        }
        let (principal, exp) = self.verify_uncached(token).await?;
        self.cache
            .insert(token.to_owned(), (principal.clone(), exp));
        Ok(principal)
    }
}
