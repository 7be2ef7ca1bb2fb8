//! The event log: append in the writer's transaction, read below the watermark, deliver to
//! subscribers exactly once in effect.
//!
//! - **Append.** [`append`] inserts into `<schema>.events` on the caller's connection, so
//!   the events commit or roll back with the state change (transactional outbox), and
//!   [`signal`]s [`CHANNEL`], which wakes the subscribers once it commits.
//! - **Watermark.** Events are ordered by `(xid, seq)`: the writing transaction's id, then
//!   insertion order. A reader returns only events whose `xid` is below
//!   `pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction still running, so
//!   an event whose transaction commits late can never be passed over: until it commits,
//!   nothing after it is read. Writers lock the aggregate before their first write, so a
//!   later version of an aggregate always has a larger `xid`.
//! - **Checkpoints.** A subscriber's position per source is a row of its own schema's
//!   `checkpoints`, moved compare-and-set in the same transaction as the subscriber's
//!   writes. One batch of a subscriber runs at a time, across its sources and across
//!   processes: it holds a transaction-scoped advisory lock per subscriber
//!   (`pg_try_advisory_xact_lock`; others skip and retry), which, unlike `FOR UPDATE`,
//!   takes no transaction id, so a slow batch never holds back the watermark other readers
//!   wait on. Each process runs one task per subscriber, cycling through its sources.
//!   Each event is applied in a savepoint; a failure is retried with backoff and, after
//!   [`MAX_ATTEMPTS`], parked in `dead_letters` so the subscription moves on.
//! - **Effects.** What a subscriber does outside its own database (another module, a
//!   gateway behind it) is [`Subscriber::effects`], run before the step's transaction
//!   opens, holding nothing: no transaction of delivery waits on anything but its own
//!   statements. An event is applied only after its effects succeeded; they must be
//!   idempotent (at least once, possibly in two processes at once).
//! - **Wake-up.** A commit that appended wakes every subscription of its process at once,
//!   and those of other processes by a `NOTIFY` sent after it, outside its transaction
//!   (`wake.rs` says why); polling covers lost wake-ups and outages.
//!
//! Files by concern: [`append`](append()) (the outbox write), `read.rs` (positions, the
//! watermark, [`EventSource`]), `subscription.rs` ([`Subscriber`], [`Subscription`] and one
//! step of delivery), `checkpoints.rs` (positions at rest, subscriber locks, the handover
//! a rebuild needs), `dispatcher.rs` (the tasks that keep delivering), `wake.rs` (wake-ups after commit), `dead_letters.rs` (parked
//! events, and their handover to a rebuilt subscriber), `publish.rs` (each log published
//! to NATS JetStream by one leader, [`Publishers`]) over `jetstream.rs` (the stream, a
//! batch sent and acknowledged).
//!
//! Its SQL is raw throughout, and that is the rule's exception, not a lapse: every log
//! lives in a schema chosen at run time (each module's own), which diesel's static
//! `table!` cannot name; the watermark needs `xid8` and `pg_snapshot_xmin`, and the locks
//! are advisory. Each statement is a named constant beside its use; `{schema}` in it is
//! replaced by [`in_schema`] with a schema name that comes from code, never from input.
//!
//! This crate knows Postgres and the envelope, and never a module: what an event means is
//! the subscriber's business, and which schemas hold logs is the app's.

mod append;
mod checkpoints;
mod dead_letters;
mod dispatcher;
mod jetstream;
mod publish;
mod read;
mod subscription;
mod wake;

pub use append::append;
pub use checkpoints::{forget_checkpoints, hand_over_checkpoints, lock_subscriber};
pub use dead_letters::{DeadLetter, dead_letters, forget_dead_letters, hand_over_dead_letters};
pub use dispatcher::{DispatchSettings, Dispatcher};
pub use jetstream::{PublishSettings, STREAM, StreamSettings, subject};
pub use publish::{PUBLISHED, PUBLISHER, PublishedLog, Publishers};
pub use read::{
    BACKLOG_CAP, Backlog, EventSource, LoggedEvent, PgEventSource, Position, backlog_statement,
};
pub use subscription::{ReadAhead, StepOutcome, Subscriber, Subscription, SubscriptionStatus};
pub use wake::{Listener, signal};

/// The event-log tables (`events`, `checkpoints`, `dead_letters`), applied into every
/// schema that keeps a log or a subscriber's checkpoints, before the schema's own
/// migrations (see `kernel::db::Schema::migrations`).
pub const MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("../../migrations/eventlog");

/// The channel every event log [`signal`]s on commit.
pub const CHANNEL: &str = "emporium_events";

/// Failures of one event before it is parked as a dead letter.
pub const MAX_ATTEMPTS: i32 = 5;

/// A statement template with `{schema}` placed: the schema is always a module's own, from
/// code (see the crate header on why the SQL is raw).
fn in_schema(template: &str, schema: &str) -> String {
    template.replace("{schema}", schema)
}
