//! The purger: what the users module keeps only for a while, deleted once it can matter
//! no more. A refresh token is kept, spent or revoked, until it expires, so that its
//! reuse is still recognised (and revokes its family); after that it answers `401` as an
//! unknown one would. A failed login counts only within the lock window.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
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
            refresh_tokens: db::delete_older(
                &mut conn,
                ("users.refresh_tokens", "id", "expires_at"),
                now,
                BATCH,
                usize::MAX,
            )
            .await?,
            login_failures: db::delete_older(
                &mut conn,
                ("users.login_failures", "id", "failed_at"),
                now - window,
                BATCH,
                usize::MAX,
            )
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
