//! The application service: parses input into domain types, runs one transaction per
//! command, and answers in `users-api` terms.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use kernel::db::{self, DbContext, Pool};
use kernel::{NewEvent, Role, UserId, Validation};
use users_api::{NewUser, User, UserApi, UserChanges, UserError, events};
use uuid::Uuid;

use crate::SCHEMA;
use crate::auth::{password, revoke_all};
use crate::domain::{Email, Password, UserName};
use crate::schema::users;

/// [`UserApi`] over Postgres.
#[derive(Clone)]
pub struct UserService {
    pool: Pool,
}

impl UserService {
    pub fn new(pool: Pool) -> Self {
        UserService { pool }
    }
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = users)]
struct UserRow {
    id: Uuid,
    email: String,
    name: String,
    active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
    /// An argon2id PHC string; never leaves this module.
    password_hash: Option<String>,
    roles: Vec<String>,
}

/// Roles as `users.users.roles` stores them (`text[]`, through [`Role::as_str`]); an
/// unknown one is an error, never dropped.
pub(crate) fn stored_roles(texts: Vec<String>) -> anyhow::Result<Vec<Role>> {
    texts
        .iter()
        .map(|t| t.parse::<Role>().map_err(anyhow::Error::from))
        .collect()
}

fn role_texts(roles: &[Role]) -> Vec<String> {
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    roles.iter().map(|r| r.as_str().to_owned()).collect()
}

impl UserRow {
    fn event(&self) -> NewEvent {
        let (email, name, active) = (self.email.clone(), self.name.clone(), self.active);
        if self.version == 1 {
            NewEvent::new(
                events::USER_REGISTERED,
                self.id,
                1,
                &events::UserRegistered {
                    email,
                    name,
                    active,
                },
            )
        } else {
            NewEvent::new(
                events::USER_UPDATED,
                self.id,
                self.version,
                &events::UserUpdated {
                    email,
                    name,
                    active,
                },
            )
        }
    }
}

impl TryFrom<UserRow> for User {
    type Error = UserError;

    fn try_from(row: UserRow) -> Result<Self, UserError> {
        Ok(User {
            id: row.id.into(),
            email: row.email,
            name: row.name,
            active: row.active,
            roles: stored_roles(row.roles)?,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Maps a failed write: the unique email constraint is `EmailTaken`, the rest unexpected.
fn write_error(error: diesel::result::Error, email: &str) -> UserError {
    match db::unique_violation(&error) {
        Some("users_email_key") => UserError::EmailTaken(email.to_owned()),
        _ => UserError::Unexpected(db::db_error(error, "writing user")),
    }
}

#[async_trait]
impl UserApi for UserService {
    #[tracing::instrument(name = "users.register", skip_all)]
    async fn register(&self, input: NewUser) -> Result<User, UserError> {
        let mut v = Validation::default();
        let email = v.check("email", Email::parse(&input.email));
        let name = v.check("name", UserName::parse(&input.name));
        let password = v.check("password", Password::parse(input.password));
        v.finish().map_err(UserError::Invalid)?;
        let (email, name) = (email.expect("validated"), name.expect("validated"));
        let hash = password::hash(password.expect("validated")).await?;

        let now = Utc::now();
        let row = UserRow {
            id: UserId::generate().as_uuid(),
            email: email.as_str().to_owned(),
            name: name.as_str().to_owned(),
            active: true,
            created_at: now,
            updated_at: now,
            version: 1,
            password_hash: Some(hash),
            roles: Vec::new(),
        };
        let mut conn = db::connect(&self.pool).await?;
        let row = db::transaction(&mut conn, async |conn| {
            let row = diesel::insert_into(users::table)
                .values(&row)
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await
                .map_err(|e| write_error(e, email.as_str()))?;
            eventlog::append(conn, SCHEMA.name, &[row.event()]).await?;
            Ok::<_, UserError>(row)
        })
        .await?;
        tracing::info!(user_id = %row.id, "user registered");
        row.try_into()
    }

    #[tracing::instrument(name = "users.get", skip_all)]
    async fn get(&self, id: UserId) -> Result<User, UserError> {
        let mut conn = db::connect(&self.pool).await?;
        let row = users::table
            .find(id.as_uuid())
            .select(UserRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .db_context("loading user")?;
        row.ok_or(UserError::NotFound(id))?.try_into()
    }

    #[tracing::instrument(name = "users.update", skip_all)]
    async fn update(&self, id: UserId, changes: UserChanges) -> Result<User, UserError> {
        let mut v = Validation::default();
        let email = changes
            .email
            .as_deref()
            .and_then(|e| v.check("email", Email::parse(e)));
        let name = changes
            .name
            .as_deref()
            .and_then(|n| v.check("name", UserName::parse(n)));
        let new_password = changes
            .password
            .and_then(|p| v.check("password", Password::parse(p)));
        v.finish().map_err(UserError::Invalid)?;

        // No connection is held while a password is hashed.
        if let Some(current) = changes.current_password {
            let mut conn = db::connect(&self.pool).await?;
            let stored: Option<Option<String>> = users::table
                .find(id.as_uuid())
                .select(users::password_hash)
                .first(&mut conn)
                .await
                .optional()
                .db_context("loading a password hash")?;
            drop(conn);
            let stored = stored.ok_or(UserError::NotFound(id))?;
            if !password::verify(stored, current).await? {
                return Err(UserError::WrongPassword);
            }
        }
        let new_hash = match new_password {
            Some(p) => Some(password::hash(p).await?),
            None => None,
        };
        let mut conn = db::connect(&self.pool).await?;
        let row = db::transaction(&mut conn, async |conn| {
            let mut row = users::table
                .find(id.as_uuid())
                .select(UserRow::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()
                .db_context("loading user")?
                .ok_or(UserError::NotFound(id))?;
            let before = (row.email.clone(), row.name.clone(), row.active);
            if let Some(email) = &email {
                row.email = email.as_str().to_owned();
            }
            if let Some(name) = &name {
                row.name = name.as_str().to_owned();
            }
            if let Some(active) = changes.active {
                row.active = active;
            }
            let deactivated = before.2 && !row.active;
            let visible = before != (row.email.clone(), row.name.clone(), row.active);
            if !visible && new_hash.is_none() {
                return Ok(row);
            }
            row.updated_at = Utc::now();
            if new_hash.is_some() || deactivated {
                revoke_all(conn, row.id).await?;
            }
            row.password_hash = new_hash.clone();
            if !visible {
                // Only the password: no event carries it, so no new version either.
                diesel::update(users::table.find(row.id))
                    .set((
                        users::password_hash.eq(&row.password_hash),
                        users::updated_at.eq(row.updated_at),
                    ))
                    .execute(conn)
                    .await
                    .db_context("changing a password")?;
                return Ok(row);
            }
            row.version += 1;
            let row = diesel::update(users::table.find(row.id))
                .set(&row)
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await
                .map_err(|e| write_error(e, &row.email))?;
            eventlog::append(conn, SCHEMA.name, &[row.event()]).await?;
            Ok::<_, UserError>(row)
        })
        .await?;
        row.try_into()
    }

    #[tracing::instrument(name = "users.set_roles", skip_all)]
    async fn set_roles(&self, id: UserId, roles: Vec<Role>) -> Result<User, UserError> {
        let mut conn = db::connect(&self.pool).await?;
        let row = db::transaction(&mut conn, async |conn| {
            let row = users::table
                .find(id.as_uuid())
                .select(UserRow::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()
                .db_context("loading user")?
                .ok_or(UserError::NotFound(id))?;
            set_roles(conn, row, &roles).await
        })
        .await?;
        row.try_into()
    }
}

/// Replaces the roles of a locked user row; a change revokes their refresh tokens (their
/// next token carries the new roles).
async fn set_roles(
    conn: &mut diesel_async::AsyncPgConnection,
    row: UserRow,
    roles: &[Role],
) -> Result<UserRow, UserError> {
    let texts = role_texts(roles);
    if texts == row.roles {
        return Ok(row);
    }
    revoke_all(conn, row.id).await?;
    let row = diesel::update(users::table.find(row.id))
        .set((users::roles.eq(&texts), users::updated_at.eq(Utc::now())))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
        .db_context("changing roles")?;
    tracing::info!(user_id = %row.id, roles = ?texts, "roles changed");
    Ok(row)
}

impl UserService {
    /// Adds `roles` to the user with this email (`emporium users grant`).
    pub async fn grant(&self, email: &str, roles: &[Role]) -> Result<User, UserError> {
        let email = Email::parse(email)
            .map_err(|e| UserError::Invalid(vec![kernel::FieldError::new("email", e)]))?;
        let mut conn = db::connect(&self.pool).await?;
        let row = db::transaction(&mut conn, async |conn| {
            let row = users::table
                .filter(users::email.eq(email.as_str()))
                .select(UserRow::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()
                .db_context("loading user")?
                .ok_or_else(|| {
                    UserError::Invalid(vec![kernel::FieldError::new(
                        "email",
                        "no user has this email",
                    )])
                })?;
            let mut all = stored_roles(row.roles.clone())?;
            all.extend_from_slice(roles);
            set_roles(conn, row, &all).await
        })
        .await?;
        row.try_into()
    }
}
