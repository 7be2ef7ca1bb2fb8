//! Timing of a module's operations: a span each, and a histogram by name and outcome for
//! `/metrics`, written once for every module that times its commands or queries.

use std::sync::Once;
use std::time::Instant;

use tracing::Instrument;

/// What is timed: the histogram (`emporium_command_duration_seconds`), its name label
/// (`command`) and its HELP text; the span each call runs in says which module. A
/// `static`, so that the HELP text is given once, on the first call.
#[derive(Debug)]
pub struct Timing {
    histogram: &'static str,
    label: &'static str,
    help: &'static str,
    described: Once,
}

impl Timing {
    pub const fn new(histogram: &'static str, label: &'static str, help: &'static str) -> Self {
        Timing {
            histogram,
            label,
            help,
            described: Once::new(),
        }
    }

    /// Runs `work` in `span`, recording its duration under `name` with `outcome` `ok` or
    /// `error`.
    pub async fn time<R, E>(
        &'static self,
        name: &'static str,
        span: tracing::Span,
        work: impl Future<Output = Result<R, E>>,
    ) -> Result<R, E> {
        self.described.call_once(|| {
            crate::http::metrics_handle();
            metrics::describe_histogram!(self.histogram, metrics::Unit::Seconds, self.help);
        });
        let started = Instant::now();
        let result = work.instrument(span).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::histogram!(self.histogram, self.label => name, "outcome" => outcome)
            .record(started.elapsed());
        result
    }
}
