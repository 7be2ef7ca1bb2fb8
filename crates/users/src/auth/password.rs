//! Password hashing: argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes), always
//! on tokio's blocking pool, never on an async worker.

use std::sync::OnceLock;

use anyhow::{Context, anyhow};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::domain::Password;

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// The PHC string (`$argon2id$v=19$...`) of a new password, with a random salt.
pub(crate) async fn hash(password: Password) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_now(password.as_str()))
        .await
        .context("password hashing task")?
}

fn hash_now(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| anyhow!("no randomness for a salt"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow!("encoding a salt: {e}"))?;
    let hash = argon2()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow!("hashing a password: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches `stored`. Without a stored hash (an unknown email, a user
/// without a password) it still costs one hash, against a dummy, and answers `false`: so
/// a wrong email and a wrong password take about the same time.
pub(crate) async fn verify(stored: Option<String>, password: String) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = match &stored {
            Some(hash) => hash.as_str(),
            None => dummy_hash(),
        };
        let parsed = PasswordHash::new(stored).map_err(|e| anyhow!("a stored hash: {e}"))?;
        let matches = argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(known && matches)
    })
    .await
    .context("password verification task")?
}

/// A hash of a random password, computed once per process, with the same parameters as
/// real ones.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut random = [0u8; 24];
        let _ = aws_lc_rs::rand::fill(&mut random);
        let password: String = random.iter().map(|b| format!("{b:02x}")).collect();
        hash_now(&password).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_never_contain_the_password() {
        let password = "correct horse battery".to_owned();
        let hash = super::hash(Password::parse(password.clone()).unwrap())
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(!hash.contains(&password));
        assert!(verify(Some(hash.clone()), password.clone()).await.unwrap());
        assert!(
            !verify(Some(hash), "wrong horse battery".into())
                .await
                .unwrap()
        );
        assert!(
            !verify(None, password).await.unwrap(),
            "no hash never matches"
        );
    }
}
