//! Who is asking: the [`Principal`] every handler may take, and the staff [`Role`]s.
//!
//! Plain data (usable from `-api` crates). How a principal is found (the bearer token, its
//! verification) is `http`'s [`crate::auth`]; which principal may do what is each
//! module's own rule, written in its own crate with these helpers.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Problem, UserId};

/// A staff role; granted only by an admin.
// Its text (`as_str`, `FromStr`, serde) is written only here. (A `//` comment: doc
// comments of this type are its OpenAPI description.)
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Catalog,
    Fulfilment,
    Support,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Catalog, Role::Fulfilment, Role::Support, Role::Admin];

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Catalog => "catalog",
            Role::Fulfilment => "fulfilment",
            Role::Support => "support",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}; roles: catalog, fulfilment, support, admin")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    /// The inverse of [`Role::as_str`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .ok_or_else(|| UnknownRole(text.to_owned()))
    }
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Principal {
    /// No `Authorization` header.
    #[default]
    Anonymous,
    /// A user, by a verified access token: a customer when `roles` is empty, else staff.
    User { id: UserId, roles: Vec<Role> },
    /// `Authorization: Bearer <ADMIN_TOKEN>`, the break-glass token: it holds no role and
    /// is accepted only where a rule says so ([`Principal::require_admin`]).
    AdminToken,
}

impl Principal {
    /// Who the events this principal causes name (`Envelope::actor`).
    pub fn actor(&self) -> crate::Actor {
        match self {
            Principal::Anonymous => crate::Actor::ANONYMOUS,
            Principal::User { id, .. } => crate::Actor::user(*id),
            Principal::AdminToken => crate::Actor::ADMIN_TOKEN,
        }
    }

    /// The user, if the caller is one.
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Principal::User { id, .. } => Some(*id),
            _ => None,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self, Principal::Anonymous)
    }

    /// The caller is the user `id`.
    pub fn is_user(&self, id: UserId) -> bool {
        self.user_id() == Some(id)
    }

    pub fn has_role(&self, role: Role) -> bool {
        matches!(self, Principal::User { roles, .. } if roles.contains(&role))
    }

    /// The caller holds at least one of `roles`.
    pub fn is_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.has_role(*r))
    }

    /// `401` for anonymous callers, else the caller is someone.
    pub fn require_authenticated(&self) -> Result<(), Problem> {
        if self.is_anonymous() {
            Err(Problem::unauthenticated())
        } else {
            Ok(())
        }
    }

    /// The user the caller is: `401` for anonymous callers, `403` for the admin token.
    pub fn require_user(&self) -> Result<UserId, Problem> {
        self.require_authenticated()?;
        self.user_id().ok_or_else(|| {
            Problem::forbidden("this route is for users; the admin token is not one")
        })
    }

    /// `401` for anonymous callers, `403` for anyone holding none of `roles`.
    pub fn require_any(&self, roles: &[Role]) -> Result<(), Problem> {
        self.require_authenticated()?;
        if self.is_any(roles) {
            Ok(())
        } else {
            let names: Vec<_> = roles.iter().map(Role::as_str).collect();
            Err(Problem::forbidden(format!(
                "this needs one of the roles {}",
                names.join(", ")
            )))
        }
    }

    /// The `admin` role or the admin token: `401` for anonymous callers, else `403`.
    pub fn require_admin(&self) -> Result<(), Problem> {
        if matches!(self, Principal::AdminToken) {
            return Ok(());
        }
        self.require_any(&[Role::Admin])
    }
}

impl Problem {
    /// `401 unauthenticated` with `WWW-Authenticate: Bearer`: no credentials were sent.
    pub fn unauthenticated() -> Problem {
        Problem {
            www_authenticate: Some("Bearer".to_owned()),
            ..Problem::new(
                401,
                "unauthenticated",
                "this needs Authorization: Bearer <access token>",
            )
        }
    }

    /// `401 unauthenticated` with `WWW-Authenticate: Bearer error="invalid_token"`: the
    /// token sent is malformed, expired, wrongly signed or for another audience. `why`
    /// never repeats the token.
    pub fn invalid_token(why: impl fmt::Display) -> Problem {
        Problem {
            www_authenticate: Some(r#"Bearer error="invalid_token""#.to_owned()),
            ..Problem::new(
                401,
                "unauthenticated",
                format!("invalid bearer token: {why}"),
            )
        }
    }

    /// `403 forbidden`: authenticated, but not allowed.
    pub fn forbidden(detail: impl fmt::Display) -> Problem {
        Problem::new(403, "forbidden", detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_their_text() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(
                serde_json::to_value(role).unwrap(),
                serde_json::json!(role.as_str())
            );
        }
        assert!("Admin".parse::<Role>().is_err());
        assert!("".parse::<Role>().is_err());
    }

    #[test]
    fn guards() {
        let me = UserId::generate();
        let customer = Principal::User {
            id: me,
            roles: vec![],
        };
        let support = Principal::User {
            id: UserId::generate(),
            roles: vec![Role::Support],
        };
        let admin = Principal::User {
            id: UserId::generate(),
            roles: vec![Role::Admin],
        };
        let staff = [Role::Support, Role::Admin];
        let status = |r: Result<(), Problem>| r.err().map(|p| (p.status, p.code));
        let cases = [
            (
                &Principal::Anonymous,
                Some((401, "unauthenticated".into())),
                Some((401, "unauthenticated".into())),
            ),
            (
                &customer,
                Some((403, "forbidden".into())),
                Some((403, "forbidden".into())),
            ),
            (&support, None, Some((403, "forbidden".into()))),
            (&admin, None, None),
            (
                &Principal::AdminToken,
                Some((403, "forbidden".into())),
                None,
            ),
        ];
        for (principal, any, require_admin) in cases {
            assert_eq!(status(principal.require_any(&staff)), any, "{principal:?}");
            assert_eq!(
                status(principal.require_admin()),
                require_admin,
                "{principal:?}"
            );
        }
        assert!(customer.is_user(me) && !support.is_user(me));
        assert_eq!(customer.require_user().unwrap(), me);
        assert_eq!(
            Principal::AdminToken.require_user().unwrap_err().status,
            403
        );
        assert_eq!(
            Principal::Anonymous
                .require_user()
                .unwrap_err()
                .www_authenticate
                .as_deref(),
            Some("Bearer")
        );
    }
}
