//! Signing keys: Ed25519, from `AUTH_SIGNING_KEY_FILE` or kept in `users.signing_keys`.
//!
//! In the database the newest key signs and the older ones still verify until tokens
//! they signed have expired (then they leave the JWKS too). The first start generates
//! one key under a table lock, so two instances starting at once agree on it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use jsonwebtoken::{DecodingKey, EncodingKey};
use kernel::db::{self, DbContext, Pool};
use serde::Serialize;

use crate::schema::signing_keys;

/// One key that verifies tokens.
pub(crate) struct PublicKey {
    pub(crate) kid: String,
    pub(crate) x: Vec<u8>,
    pub(crate) decoding: DecodingKey,
}

/// The keys an instance signs and verifies with.
pub(crate) struct KeySet {
    pub(crate) signing_kid: String,
    pub(crate) signing: EncodingKey,
    /// Newest first; those still in use.
    pub(crate) public: Vec<PublicKey>,
}

impl KeySet {
    pub(crate) fn find(&self, kid: &str) -> Option<&PublicKey> {
        self.public.iter().find(|k| k.kid == kid)
    }

    /// The RFC 7517 key set of the public keys.
    pub(crate) fn jwks(&self) -> Jwks {
        Jwks {
            keys: self
                .public
                .iter()
                .map(|k| Jwk {
                    kty: "OKP",
                    crv: "Ed25519",
                    alg: "EdDSA",
                    key_use: "sig",
                    kid: k.kid.clone(),
                    x: URL_SAFE_NO_PAD.encode(&k.x),
                })
                .collect(),
        }
    }
}

/// `GET /.well-known/jwks.json`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// An Ed25519 public key (RFC 8037 `OKP`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Jwk {
    /// `OKP`
    #[schema(examples("OKP"))]
    pub kty: &'static str,
    /// `Ed25519`
    #[schema(examples("Ed25519"))]
    pub crv: &'static str,
    /// `EdDSA`
    #[schema(examples("EdDSA"))]
    pub alg: &'static str,
    /// `sig`
    #[serde(rename = "use")]
    #[schema(examples("sig"))]
    pub key_use: &'static str,
    /// The `kid` header of the tokens this key signed.
    pub kid: String,
    /// The public key, base64url without padding.
    pub x: String,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = signing_keys)]
struct KeyRow {
    kid: String,
    private_key: Vec<u8>,
    public_key: Vec<u8>,
    created_at: DateTime<Utc>,
}

/// A key's id: the first 16 bytes of the SHA-256 of its public key, base64url.
fn kid_of(public_key: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, public_key);
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
}

fn public_key(pkcs8: &[u8]) -> anyhow::Result<Vec<u8>> {
    let pair =
        Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| anyhow!("not an Ed25519 PKCS#8 key: {e}"))?;
    Ok(pair.public_key().as_ref().to_vec())
}

fn generate() -> anyhow::Result<KeyRow> {
    let document = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
        .map_err(|e| anyhow!("generating a key: {e}"))?;
    let private_key = document.as_ref().to_vec();
    let public_key = public_key(&private_key)?;
    Ok(KeyRow {
        kid: kid_of(&public_key),
        private_key,
        public_key,
        created_at: Utc::now(),
    })
}

/// The key of an Ed25519 PKCS#8 PEM file: it alone signs and verifies.
pub(crate) fn from_file(path: &Path) -> anyhow::Result<KeySet> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let encoding = EncodingKey::from_ed_pem(&pem)
        .map_err(|e| anyhow!("{} is not an Ed25519 PKCS#8 PEM key: {e}", path.display()))?;
    let x = public_key(encoding.as_bytes())
        .with_context(|| format!("the key in {}", path.display()))?;
    let kid = kid_of(&x);
    Ok(KeySet {
        signing_kid: kid.clone(),
        signing: encoding,
        public: vec![PublicKey {
            kid,
            decoding: DecodingKey::from_ed_der(&x),
            x,
        }],
    })
}

/// Raw: `LOCK TABLE` has no diesel DSL. Serializes the first start's key generation.
const LOCK_KEYS: &str = "LOCK TABLE users.signing_keys IN SHARE ROW EXCLUSIVE MODE";

/// Makes sure the database holds a key (generating the first one), then loads them.
pub(crate) async fn ensure(pool: &Pool, token_ttl: Duration) -> anyhow::Result<KeySet> {
    let mut conn = db::connect(pool).await?;
    db::transaction(&mut conn, async |conn| {
        diesel::sql_query(LOCK_KEYS)
            .execute(conn)
            .await
            .db_context("locking signing keys")?;
        let any: Option<String> = signing_keys::table
            .select(signing_keys::kid)
            .first(conn)
            .await
            .optional()
            .db_context("looking for a signing key")?;
        if any.is_none() {
            insert(conn, generate()?).await?;
            tracing::info!("generated the first signing key");
        }
        Ok::<_, anyhow::Error>(())
    })
    .await?;
    load(&mut conn, token_ttl).await
}

async fn insert(conn: &mut AsyncPgConnection, row: KeyRow) -> anyhow::Result<String> {
    diesel::insert_into(signing_keys::table)
        .values(&row)
        .execute(conn)
        .await
        .db_context("storing a signing key")?;
    Ok(row.kid)
}

/// Adds a new signing key (`emporium keys rotate`); answers its kid.
pub async fn rotate(pool: &Pool) -> anyhow::Result<String> {
    let mut conn = db::connect(pool).await?;
    let kid = insert(&mut conn, generate()?).await?;
    tracing::info!(kid, "added a signing key");
    Ok(kid)
}

/// The kid of the newest key in the database, if any.
pub(crate) async fn newest_kid(conn: &mut AsyncPgConnection) -> anyhow::Result<Option<String>> {
    signing_keys::table
        .select(signing_keys::kid)
        .order((signing_keys::created_at.desc(), signing_keys::kid.desc()))
        .first(conn)
        .await
        .optional()
        .db_context("loading the newest signing key")
}

/// Every key still in use: the newest signs; an older one verifies while its successor
/// is younger than a token's lifetime (plus a minute of clock skew).
pub(crate) async fn load(
    conn: &mut AsyncPgConnection,
    token_ttl: Duration,
) -> anyhow::Result<KeySet> {
    let rows: Vec<KeyRow> = signing_keys::table
        .select(KeyRow::as_select())
        .order((signing_keys::created_at.desc(), signing_keys::kid.desc()))
        .load(conn)
        .await
        .db_context("loading signing keys")?;
    let newest = rows
        .as_slice()
        .first()
        .context("no signing key in the database")?;
    let signing = EncodingKey::from_ed_der(&newest.private_key);
    let signing_kid = newest.kid.clone();
    let horizon = Utc::now()
        - chrono::Duration::from_std(token_ttl + Duration::from_secs(60))
            .unwrap_or(chrono::Duration::MAX);
    let mut public = Vec::new();
    let mut successor: Option<DateTime<Utc>> = None;
    for row in &rows {
        if successor.is_none_or(|s| s > horizon) {
            public.push(PublicKey {
                kid: row.kid.clone(),
                decoding: DecodingKey::from_ed_der(&row.public_key),
                x: row.public_key.clone(),
            });
        }
        successor = Some(row.created_at);
    }
    Ok(KeySet {
        signing_kid,
        signing,
        public,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify() {
        let row = generate().unwrap();
        assert_eq!(row.public_key.len(), 32);
        assert_eq!(row.kid, kid_of(&row.public_key));
        let signing = EncodingKey::from_ed_der(&row.private_key);
        let header = jsonwebtoken::Header {
            kid: Some(row.kid.clone()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA)
        };
        let claims = serde_json::json!({"sub": "x", "exp": 4_000_000_000u64});
        let token = jsonwebtoken::encode(&header, &claims, &signing).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_ed_der(&row.public_key),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims["sub"], "x");
    }
}
