//! The users module's contract: what other modules and the app may know about users.
//!
//! Plain data, the [`UserApi`] trait and the [`UserError`] enum. Never depends on diesel,
//! actix-web or tokio-postgres, and never on another module.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{FieldError, UserId};
use serde::{Deserialize, Serialize};

/// A registered user, as the users module answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Input of [`UserApi::register`]: raw text, validated by the module.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub email: String,
    pub name: String,
}

/// Input of [`UserApi::update`]: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub email: Option<String>,
    pub name: Option<String>,
    pub active: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {0} not found")]
    NotFound(UserId),
    #[error("email {0} is already registered")]
    EmailTaken(String),
    #[error("invalid user input")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[async_trait]
pub trait UserApi: Send + Sync {
    async fn register(&self, input: NewUser) -> Result<User, UserError>;
    async fn get(&self, id: UserId) -> Result<User, UserError>;
    async fn update(&self, id: UserId, changes: UserChanges) -> Result<User, UserError>;
}
