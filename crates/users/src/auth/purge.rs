//! The purger: what the users module keeps only for a while, deleted once it can matter
//! no more. A refresh token is kept, spent or revoked, until it expires, so that its
//! reuse is still recognised (and revokes its family); after that it answers `401` as an
//! unknown one would. A failed login counts only within the lock window.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::RunQueryDsl;
use kernel::db;

use super::Auth;

/// Rows deleted per statement: each is its own short transaction.
const BATCH: i64 = 1000;

/// What one purge deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub refresh_tokens: usize,
    pub login_failures: usize,
}

impl Auth {
    /// Deletes expired refresh tokens and failed logins older than the lock window, a
    /// bounded batch per statement, until none is left.
    pub async fn purge(&self) -> anyhow::Result<Purged> {
        let mut conn = db::connect(&self.pool).await?;
        let now = Utc::now();
        let window = chrono::Duration::from_std(self.lock.window)?;
        Ok(Purged {
            refresh_tokens: in_batches(&mut conn, "refresh_tokens", "expires_at", now).await?,
            login_failures: in_batches(&mut conn, "login_failures", "failed_at", now - window)
                .await?,
        })
    }

    /// Purges every `every`, for as long as the handle lives; a failure is logged and
    /// tried again next time.
    pub fn spawn_purger(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match self.purge().await {
                    Ok(purged) if purged != Purged::default() => {
                        tracing::info!(
                            refresh_tokens = purged.refresh_tokens,
                            login_failures = purged.login_failures,
                            "purged expired credentials"
                        );
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(error = format!("{error:#}"), "purge failed"),
                }
            }
        })
    }
}

/// Deletes the rows of `users.<table>` whose `column` is before `cutoff`, [`BATCH`] at a
/// time; answers how many.
async fn in_batches(
    conn: &mut db::Connection,
    table: &str,
    column: &str,
    cutoff: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let sql = format!(
        "DELETE FROM users.{table} WHERE id IN \
         (SELECT id FROM users.{table} WHERE {column} < $1 LIMIT $2)"
    );
    let mut total = 0;
    loop {
        let deleted = diesel::sql_query(&sql)
            .bind::<Timestamptz, _>(cutoff)
            .bind::<BigInt, _>(BATCH)
            .execute(&mut **conn)
            .await
            .map_err(|e| db::db_error(e, "purging"))?;
        total += deleted;
        if (deleted as i64) < BATCH {
            return Ok(total);
        }
    }
}
