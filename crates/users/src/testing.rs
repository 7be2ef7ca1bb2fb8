//! Test support (feature `testing`): access tokens forged with the database's own
//! signing key, or another, so suites can present expired, foreign-audience and wrongly
//! signed tokens as an attacker would. Never in a real server.

use aws_lc_rs::signature::Ed25519KeyPair;
use diesel::sql_types::{Bytea, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

#[derive(diesel::QueryableByName)]
struct Key {
    #[diesel(sql_type = Text)]
    kid: String,
    #[diesel(sql_type = Bytea)]
    private_key: Vec<u8>,
}

/// A token for user `sub` (no roles, valid for 10 minutes) with `changes` made to its
/// claims, signed with the newest key of `users.signing_keys` (read on `conn`, which must
/// be allowed to) or, when `other_key`, with a key nobody knows (under the real `kid`).
pub async fn forge(
    conn: &mut AsyncPgConnection,
    sub: &str,
    changes: Value,
    other_key: bool,
) -> String {
    let key: Key = diesel::sql_query(
        "SELECT kid, private_key FROM users.signing_keys ORDER BY created_at DESC LIMIT 1",
    )
    .get_result(conn)
    .await
    .expect("a signing key");
    let der = if other_key {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .expect("a key")
            .as_ref()
            .to_vec()
    } else {
        key.private_key
    };
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = json!({"iss": crate::ISSUER, "aud": crate::AUDIENCE, "sub": sub,
        "roles": [], "iat": now, "exp": now + 600, "jti": "forged"});
    for (field, value) in changes.as_object().expect("an object of claims") {
        claims[field] = value.clone();
    }
    let header = Header {
        kid: Some(key.kid),
        ..Header::new(Algorithm::EdDSA)
    };
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&der)).expect("signed")
}
