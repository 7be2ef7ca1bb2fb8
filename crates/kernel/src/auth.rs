//! Authentication at the edge: the actix extractor for [`Principal`].
//!
//! It reads `Authorization: Bearer <token>`; no header is [`Principal::Anonymous`], the
//! configured `ADMIN_TOKEN` is [`Principal::AdminToken`] (compared in constant time), and
//! anything else goes to the [`TokenVerifier`] the app registered (in an
//! [`Authenticator`]): the users module implements it. The kernel knows no user table and
//! no token format: only this trait.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use async_trait::async_trait;
use futures_util::future::LocalBoxFuture;

use crate::{Principal, Problem};

/// Why a bearer token is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Malformed, expired, wrongly signed, another audience...: `401 invalid_token`. The
    /// text says why and never repeats the token.
    #[error("{0}")]
    Invalid(String),
    /// The verifier could not decide (say, the database is away while it reloads keys).
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Verifies access tokens; implemented by the module that issues them.
#[async_trait]
pub trait TokenVerifier: Send + Sync {
    /// The principal `token` stands for.
    async fn verify(&self, token: &str) -> Result<Principal, TokenError>;
}

/// What the extractor needs, registered as `web::Data<Authenticator>` in the app data.
#[derive(Clone, Default)]
pub struct Authenticator {
    /// Verifies access tokens; without one, every token is rejected.
    pub verifier: Option<Arc<dyn TokenVerifier>>,
    /// The break-glass `ADMIN_TOKEN`, if configured (an empty one is none).
    pub admin_token: Option<String>,
}

impl Authenticator {
    /// The principal of an `Authorization` header value (`None`: no header).
    pub async fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Principal, Problem> {
        let Some(value) = authorization else {
            return Ok(Principal::Anonymous);
        };
        let token = bearer(value).ok_or_else(|| {
            Problem::invalid_token("the Authorization header must be `Bearer <token>`")
        })?;
        if let Some(admin) = self.admin_token.as_deref().filter(|t| !t.is_empty())
            && constant_time_eq(token.as_bytes(), admin.as_bytes())
        {
            return Ok(Principal::AdminToken);
        }
        let Some(verifier) = &self.verifier else {
            return Err(Problem::invalid_token("no token verifier is configured"));
        };
        match verifier.verify(token).await {
            Ok(principal) => Ok(principal),
            Err(TokenError::Invalid(why)) => Err(Problem::invalid_token(why)),
            Err(TokenError::Unexpected(e)) => Err(crate::http::unexpected(e)),
        }
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive), if the value has that shape.
fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    let well_formed = scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_graphic());
    well_formed.then_some(token)
}

/// Compares without an early exit: the time depends on the lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        difference |= usize::from(x ^ y);
    }
    difference == 0
}

impl FromRequest for Principal {
    type Error = Problem;
    type Future = LocalBoxFuture<'static, Result<Principal, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let authenticator = req
            .app_data::<web::Data<Authenticator>>()
            .map(|a| a.clone().into_inner());
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        Box::pin(async move {
            let Some(authorization) = authorization else {
                return Ok(Principal::Anonymous);
            };
            let authenticator = authenticator.unwrap_or_default();
            let principal = authenticator.authenticate(Some(&authorization)).await?;
            // Every event the request causes from here on names its caller.
            crate::context::set_actor(principal.actor());
            Ok(principal)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_header_shapes() {
        let cases: [(&[u8], Option<&str>); 7] = [
            (b"Bearer abc.def", Some("abc.def")),
            (b"bearer abc", Some("abc")),
            (b"Bearer ", None),
            (b"Basic dXNlcjpwYXNz", None),
            (b"Bearerabc", None),
            (b"Bearer a b", None),
            (b"Bearer \xff", None),
        ];
        for (value, expected) in cases {
            assert_eq!(bearer(value), expected, "{value:?}");
        }
    }
}
