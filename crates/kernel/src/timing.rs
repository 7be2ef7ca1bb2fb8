//! Timing of a module's operations: a span each, and a histogram by name and outcome for
//! `/metrics`, written once for every module that times its commands or queries.

use std::time::Instant;

use tracing::Instrument;

/// What is timed: the histogram (`command_duration_seconds`) and its name label
/// (`command`); the span each call runs in says which module.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub histogram: &'static str,
    pub label: &'static str,
}

impl Timing {
    /// Runs `work` in `span`, recording its duration under `name` with `outcome` `ok` or
    /// `error`.
    pub async fn time<R, E>(
        self,
        name: &'static str,
        span: tracing::Span,
        work: impl Future<Output = Result<R, E>>,
    ) -> Result<R, E> {
        let started = Instant::now();
        let result = work.instrument(span).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::histogram!(self.histogram, self.label => name, "outcome" => outcome)
            .record(started.elapsed());
        result
    }
}
