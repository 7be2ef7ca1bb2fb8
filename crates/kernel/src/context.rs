//! Who the running work is for, and which request caused it: the [`Actor`] and the
//! correlation id that every event appended meanwhile carries (the audit trail).
//!
//! A task-local, so no module passes it by hand: `http::observe` opens it for every request
//! with the request id (the caller is anonymous until the authentication names them with
//! [`set_actor`]); the event log opens it for every event it delivers, as the system's work
//! carrying the event's own correlation id, so the steps a saga takes because of a request
//! keep that request's id. Anything else (expiry, the reconciler, start-up) runs outside
//! one, as [`Actor::SYSTEM`] with no correlation id. Work moved to another task (a
//! `tokio::spawn`, `spawn_blocking`) leaves it behind.

use std::future::Future;
use std::sync::Mutex;

use crate::Actor;

/// What [`scope`] holds for the work inside it.
#[derive(Debug)]
pub struct Context {
    actor: Mutex<Actor>,
    correlation_id: Option<String>,
}

impl Context {
    pub fn new(actor: Actor, correlation_id: Option<String>) -> Context {
        Context {
            actor: Mutex::new(actor),
            correlation_id,
        }
    }
}

tokio::task_local! {
    static CONTEXT: Context;
}

/// Runs `work` inside `context`.
pub async fn scope<F: Future>(context: Context, work: F) -> F::Output {
    CONTEXT.scope(context, work).await
}

/// Names who the running work is for (the authentication does, once it knows the caller).
/// Outside any [`scope`] it does nothing.
pub fn set_actor(actor: Actor) {
    let _ = CONTEXT.try_with(|context| {
        *context.actor.lock().unwrap_or_else(|e| e.into_inner()) = actor;
    });
}

/// The actor and correlation id of the running work: [`Actor::SYSTEM`] and `None` outside
/// any [`scope`].
pub fn current() -> (Actor, Option<String>) {
    CONTEXT
        .try_with(|context| {
            (
                *context.actor.lock().unwrap_or_else(|e| e.into_inner()),
                context.correlation_id.clone(),
            )
        })
        .unwrap_or((Actor::SYSTEM, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_for_its_scope_and_the_system_outside_one() {
        assert_eq!(current(), (Actor::SYSTEM, None));
        set_actor(Actor::ADMIN_TOKEN);
        assert_eq!(current(), (Actor::SYSTEM, None), "no scope, nothing set");
        let user = uuid::Uuid::now_v7();
        let inside = scope(
            Context::new(Actor::ANONYMOUS, Some("req-1".into())),
            async {
                let before = current();
                tokio::task::yield_now().await;
                set_actor(Actor::user(user));
                (before, current())
            },
        )
        .await;
        assert_eq!(
            inside,
            (
                (Actor::ANONYMOUS, Some("req-1".into())),
                (Actor::user(user), Some("req-1".into()))
            )
        );
        assert_eq!(current(), (Actor::SYSTEM, None));
    }
}
