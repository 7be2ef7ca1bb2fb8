//! Who a module's own suite calls as, without the users module: [`TestTokens`] stands in
//! for its token verifier (as the `-api` crates' in-memory fakes stand in for the other
//! modules), and [`Http::as_customer`] / [`Http::as_staff`] send its tokens.
//!
//! The app's suite (`apps/emporium`) logs in through the real users module instead.

use async_trait::async_trait;

use super::Http;
use crate::auth::{Authenticator, TokenError, TokenVerifier};
use crate::{Principal, Role, UserId};

/// The break-glass token of every module suite's server.
pub const TEST_ADMIN_TOKEN: &str = "module-test-admin-token";

/// Verifies the tokens of [`token`]: `test.<user id>.<role>,<role>`. Any other token is
/// invalid, as a real verifier's would be.
pub struct TestTokens;

/// The bearer token [`TestTokens`] reads as user `id` holding `roles`.
pub fn token(id: UserId, roles: &[Role]) -> String {
    let roles: Vec<_> = roles.iter().map(Role::as_str).collect();
    format!("test.{id}.{}", roles.join(","))
}

#[async_trait]
impl TokenVerifier for TestTokens {
    async fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let invalid = || TokenError::Invalid("not a test token".to_owned());
        let rest = token.strip_prefix("test.").ok_or_else(invalid)?;
        let (id, roles) = rest.split_once('.').ok_or_else(invalid)?;
        let id = id.parse::<uuid::Uuid>().map_err(|_| invalid())?;
        let roles = roles
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Role>, _>>()
            .map_err(|_| invalid())?;
        Ok(Principal::User {
            id: UserId::from(id),
            roles,
        })
    }
}

/// What every [`super::TestServer`] registers before a suite's own app data (which may
/// replace it, as the users suite does with its real verifier).
pub(super) fn authenticator() -> Authenticator {
    Authenticator {
        verifier: Some(std::sync::Arc::new(TestTokens)),
        admin_token: Some(TEST_ADMIN_TOKEN.to_owned()),
    }
}

impl Http {
    /// The same client, calling as the customer `id` (a user holding no role).
    pub fn as_customer(&self, id: UserId) -> Http {
        self.with_bearer(&token(id, &[]))
    }

    /// The same client, calling as a new staff member holding `roles`.
    pub fn as_staff(&self, roles: &[Role]) -> Http {
        self.with_bearer(&token(UserId::generate(), roles))
    }

    /// The same client, calling with the suite's `ADMIN_TOKEN`.
    pub fn as_admin_token(&self) -> Http {
        self.with_bearer(TEST_ADMIN_TOKEN)
    }
}
