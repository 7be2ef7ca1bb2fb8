//! Panics as values: a handler or a subscriber that panics fails its one request or event,
//! and the worker that ran it lives on.

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

/// Runs `future`, turning a panic inside it into `Err` with the panic's message.
pub async fn catch_panic<F: Future>(future: F) -> Result<F::Output, String> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|panic| {
            panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".to_owned())
        })
}
