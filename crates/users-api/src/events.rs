//! The integration events the users module publishes (envelope `aggregate_id` = user id).

use kernel::{Contract, Log, Payload};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const USER_REGISTERED: &str = "user.registered";
pub const USER_UPDATED: &str = "user.updated";

/// The users module's event log.
pub const LOG: Log = Log {
    module: "users",
    events: &[
        Contract::of::<UserRegistered>(USER_REGISTERED, "An account was registered."),
        Contract::of::<UserUpdated>(
            USER_UPDATED,
            "An account's name, email or active flag changed.",
        ),
    ],
};

/// `user.registered`: the account as registered (never its password or a hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserRegistered {
    pub email: String,
    pub name: String,
    pub active: bool,
}

impl Payload for UserRegistered {
    fn sample() -> Self {
        UserRegistered {
            email: "ada@example.com".into(),
            name: "Ada Lovelace".into(),
            active: true,
        }
    }
}

/// `user.updated`: the user as it is after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserUpdated {
    pub email: String,
    pub name: String,
    pub active: bool,
}

impl Payload for UserUpdated {
    fn sample() -> Self {
        UserUpdated {
            email: "ada@example.org".into(),
            name: "Ada King".into(),
            active: false,
        }
    }
}
