//! The application service: parses input into domain types, runs one transaction per
//! command, and answers in `users-api` terms.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use kernel::db::{self, DbContext, Pool};
use kernel::{NewEvent, UserId, Validation};
use users_api::{NewUser, User, UserApi, UserChanges, UserError, events};
use uuid::Uuid;

use crate::SCHEMA;
use crate::domain::{Email, UserName};
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

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            id: row.id.into(),
            email: row.email,
            name: row.name,
            active: row.active,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
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
        v.finish().map_err(UserError::Invalid)?;
        let (email, name) = (email.expect("validated"), name.expect("validated"));

        let now = Utc::now();
        let row = UserRow {
            id: UserId::generate().as_uuid(),
            email: email.as_str().to_owned(),
            name: name.as_str().to_owned(),
            active: true,
            created_at: now,
            updated_at: now,
            version: 1,
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
        Ok(row.into())
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
        row.map(User::from).ok_or(UserError::NotFound(id))
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
        v.finish().map_err(UserError::Invalid)?;

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
            if before == (row.email.clone(), row.name.clone(), row.active) {
                return Ok(row);
            }
            row.updated_at = Utc::now();
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
        Ok(row.into())
    }
}
