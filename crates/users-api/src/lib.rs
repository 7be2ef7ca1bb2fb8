//! The users module's contract: what other modules and the app may know about users.
//!
//! Plain data, the [`UserApi`] trait and the [`UserError`] enum. Never depends on diesel,
//! actix-web or tokio-postgres, and never on another module.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{FieldError, IntoProblem, Problem, Role, UserId};
use serde::{Deserialize, Serialize};

/// A registered user, as the users module answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub id: UserId,
    /// Trimmed and lower-case; unique.
    #[schema(format = Email, examples("ada@example.com"))]
    pub email: String,
    /// 1 to 200 characters, trimmed.
    #[schema(examples("Ada Lovelace"))]
    pub name: String,
    /// New users are active; an inactive user cannot place orders.
    pub active: bool,
    /// Staff roles; `[]` for a customer. Granted only by an admin.
    pub roles: Vec<Role>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Input of [`UserApi::register`]: raw text, validated by the module.
#[derive(Clone, Default)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    /// 10 to 256 characters; hashed (argon2id), never stored, logged or echoed.
    pub password: String,
}

/// Input of [`UserApi::update`]: `None` leaves a field as it is.
#[derive(Clone, Default)]
pub struct UserChanges {
    pub email: Option<String>,
    pub name: Option<String>,
    pub active: Option<bool>,
    /// A new password (10 to 256 characters).
    pub password: Option<String>,
    /// The present password, when the caller must prove it (a user changing their own
    /// email or password); checked before anything changes.
    pub current_password: Option<String>,
}

// `Debug` of the inputs that carry a password never shows it.
impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("email", &self.email)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for UserChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserChanges")
            .field("email", &self.email)
            .field("name", &self.name)
            .field("active", &self.active)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {0} not found")]
    NotFound(UserId),
    #[error("email {0} is already registered")]
    EmailTaken(String),
    #[error("invalid user input")]
    Invalid(Vec<FieldError>),
    /// Wrong email, wrong password or inactive user: one answer for all three.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The brute-force lock of one email: retry after this many seconds.
    #[error("too many failed attempts; retry in {0} s")]
    TooManyAttempts(u32),
    /// The `current_password` of a change does not match.
    #[error("the current password does not match")]
    WrongPassword,
    /// A refresh token that is unknown, expired, revoked or already used.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// Not `transparent`: the cause stays in the `source()` chain, so a
    /// [`kernel::Unavailable`] under it is still found (and answered `503`) by whoever
    /// wraps this error again.
    #[error("unexpected failure in the users module")]
    Unexpected(#[from] anyhow::Error),
}

impl IntoProblem for UserError {
    fn into_problem(self) -> Result<Problem, anyhow::Error> {
        Ok(match self {
            UserError::NotFound(id) => {
                Problem::not_found("user_not_found", format!("user {id} does not exist"))
            }
            UserError::EmailTaken(_) => {
                Problem::conflict("email_taken", "this email is already registered")
            }
            UserError::Invalid(errors) => Problem::validation(errors),
            UserError::InvalidCredentials => Problem::new(
                401,
                "invalid_credentials",
                "the email or the password is wrong, or the user is inactive",
            ),
            UserError::TooManyAttempts(seconds) => Problem {
                retry_after: Some(seconds),
                ..Problem::new(
                    429,
                    "too_many_attempts",
                    format!("too many failed logins for this email; retry in {seconds} s"),
                )
            },
            UserError::WrongPassword => Problem::forbidden("current_password does not match"),
            UserError::InvalidRefreshToken => Problem::new(
                401,
                "invalid_grant",
                "the refresh token is unknown, expired, revoked or already used",
            ),
            UserError::Unexpected(cause) => return Err(cause),
        })
    }
}

#[async_trait]
pub trait UserApi: Send + Sync {
    async fn register(&self, input: NewUser) -> Result<User, UserError>;
    async fn get(&self, id: UserId) -> Result<User, UserError>;
    async fn update(&self, id: UserId, changes: UserChanges) -> Result<User, UserError>;
    /// Replaces the user's staff roles (and revokes their refresh tokens).
    async fn set_roles(&self, id: UserId, roles: Vec<Role>) -> Result<User, UserError>;
}

#[cfg(feature = "testing")]
pub mod testing {
    //! An in-memory [`UserApi`] for other modules' suites, so they run without the users
    //! module. It keeps the contract's observable rules (unique lower-case email, not
    //! found), not its full validation.

    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    pub struct InMemoryUsers {
        users: Mutex<HashMap<UserId, User>>,
    }

    impl InMemoryUsers {
        /// Adds a user directly and returns it.
        pub fn add(&self, email: &str, name: &str, active: bool) -> User {
            let now = Utc::now();
            let user = User {
                id: UserId::generate(),
                email: email.to_lowercase(),
                name: name.to_owned(),
                active,
                roles: Vec::new(),
                created_at: now,
                updated_at: now,
            };
            self.users
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(user.id, user.clone());
            user
        }
    }

    #[async_trait]
    impl UserApi for InMemoryUsers {
        async fn register(&self, input: NewUser) -> Result<User, UserError> {
            let email = input.email.trim().to_lowercase();
            let taken = self
                .users
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .any(|u| u.email == email);
            if taken {
                return Err(UserError::EmailTaken(email));
            }
            Ok(self.add(&email, input.name.trim(), true))
        }

        async fn get(&self, id: UserId) -> Result<User, UserError> {
            self.users
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .cloned()
                .ok_or(UserError::NotFound(id))
        }

        async fn update(&self, id: UserId, changes: UserChanges) -> Result<User, UserError> {
            let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            let user = users.get_mut(&id).ok_or(UserError::NotFound(id))?;
            if let Some(email) = changes.email {
                user.email = email.trim().to_lowercase();
            }
            if let Some(name) = changes.name {
                user.name = name.trim().to_owned();
            }
            if let Some(active) = changes.active {
                user.active = active;
            }
            user.updated_at = Utc::now();
            Ok(user.clone())
        }

        async fn set_roles(&self, id: UserId, roles: Vec<Role>) -> Result<User, UserError> {
            let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            let user = users.get_mut(&id).ok_or(UserError::NotFound(id))?;
            user.roles = roles;
            user.updated_at = Utc::now();
            Ok(user.clone())
        }
    }
}

pub mod events;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_states_its_status_and_code() {
        let cases = [
            (
                UserError::NotFound(UserId::generate()),
                404,
                "user_not_found",
            ),
            (UserError::EmailTaken("a@b.c".into()), 409, "email_taken"),
            (UserError::InvalidCredentials, 401, "invalid_credentials"),
            (UserError::TooManyAttempts(60), 429, "too_many_attempts"),
            (UserError::InvalidRefreshToken, 401, "invalid_grant"),
            (UserError::WrongPassword, 403, "forbidden"),
            (
                UserError::Invalid(vec![FieldError::new("name", "is required")]),
                422,
                "validation_failed",
            ),
        ];
        for (error, status, code) in cases {
            let p = error
                .into_problem()
                .expect("a domain error states its problem");
            assert_eq!((p.status, p.code.as_str()), (status, code), "{p}");
        }
        let cause = UserError::Unexpected(anyhow::anyhow!("syntax error at or near SELECT"))
            .into_problem()
            .expect_err("an unexpected failure is passed on with its cause");
        assert!(format!("{cause}").contains("SELECT"));
    }
}
