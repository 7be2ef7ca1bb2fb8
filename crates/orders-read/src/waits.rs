//! Read-your-writes waits (`GET /queries/orders/{id}?min_version=N`) that cost nothing
//! while they wait: a waiter holds no database connection and runs no query until the
//! projection moves. The projection notifies [`MOVED`] in each batch's transaction (so
//! on commit, on whichever instance applied it); each process listens once
//! ([`eventlog::Listener`]) and wakes its waiters, which then look again. A waiter also
//! looks every [`FALLBACK`] in case a notification was lost. At most `max_waiters` wait
//! at once per process; one more is answered at once with what the read model holds.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

/// The channel the live projection notifies in every batch it applies.
pub const MOVED: &str = "orders_read_moved";

/// How often a waiter looks without a wake-up (a lost notification, no listener).
const FALLBACK: Duration = Duration::from_secs(1);
/// How often a waiter looks when nothing wakes it (a read side without a listener:
/// tools and tests that build one by hand).
const POLL: Duration = Duration::from_millis(10);

/// The waiters of one process.
#[derive(Clone)]
pub(crate) struct Waits {
    moved: Option<watch::Receiver<u64>>,
    waiters: Arc<Semaphore>,
}

/// One waiter's place among the waiters, held while it waits.
pub(crate) struct Waiter {
    moved: Option<watch::Receiver<u64>>,
    deadline: Instant,
    _place: tokio::sync::OwnedSemaphorePermit,
}

impl Waits {
    /// Waits woken by `moved` (or polling, without one), at most `max_waiters` at once.
    pub(crate) fn new(moved: Option<watch::Receiver<u64>>, max_waiters: usize) -> Waits {
        Waits {
            moved,
            waiters: Arc::new(Semaphore::new(max_waiters)),
        }
    }

    /// A place to wait until `deadline`, if one is free. Taken before the first look, so
    /// that a move between the look and the wait still wakes it.
    pub(crate) fn enter(&self, deadline: Instant) -> Option<Waiter> {
        let place = self.waiters.clone().try_acquire_owned().ok()?;
        let mut moved = self.moved.clone();
        if let Some(moved) = &mut moved {
            moved.borrow_and_update();
        }
        Some(Waiter {
            moved,
            deadline,
            _place: place,
        })
    }
}

impl Waiter {
    /// Sleeps until the projection moves, the fallback or poll interval passes, or the
    /// deadline; answers whether the deadline has passed.
    pub(crate) async fn next(&mut self) -> bool {
        let now = Instant::now();
        match &mut self.moved {
            Some(moved) => {
                let until = (now + FALLBACK).min(self.deadline);
                if let Ok(Err(_)) = tokio::time::timeout_at(until, moved.changed()).await {
                    // The listener is gone (the process is stopping): no wake-ups.
                    tokio::time::sleep_until(until).await;
                }
            }
            None => tokio::time::sleep_until((now + POLL).min(self.deadline)).await,
        }
        Instant::now() >= self.deadline
    }
}
