//! Emporium and the floor measured by turns: each wrk phase runs in short rounds,
//! emporium, floor, floor, emporium, emporium, ... (ABBA, so neither always goes first), so
//! that drift on a shared machine hits both alike; each side's figure is the median of its
//! rounds. A warm-up round of each side (round 0, not counted) goes first, so that neither
//! pays for opening its pool's connections or filling caches in a measured round.

use std::time::Duration;

use super::wrk::{Side, WrkRun};

/// The runs of one phase, in the order they run: the warm-ups (round 0), then `rounds`
/// per side, or emporium's alone when the floor does not serve the phase.
pub(super) fn schedule(rounds: usize, floor: bool) -> Vec<(Side, usize)> {
    (0..=rounds)
        .flat_map(|round| {
            let pair = if round % 2 == 0 {
                [Side::Floor, Side::Emporium]
            } else {
                [Side::Emporium, Side::Floor]
            };
            pair.into_iter()
                .filter(move |side| floor || *side == Side::Emporium)
                .map(move |side| (side, round))
        })
        .collect()
}

/// One side's rounds of a phase.
#[derive(Default)]
pub(super) struct Rounds {
    pub(super) runs: Vec<WrkRun>,
}

impl Rounds {
    pub(super) fn per_second(&self) -> f64 {
        median(self.runs.iter().map(WrkRun::per_second))
    }

    pub(super) fn flows_per_second(&self) -> f64 {
        median(self.runs.iter().map(WrkRun::flows_per_second))
    }

    pub(super) fn p50(&self) -> Duration {
        Duration::from_secs_f64(median(self.runs.iter().map(|r| r.p50.as_secs_f64())))
    }

    pub(super) fn p99(&self) -> Duration {
        Duration::from_secs_f64(median(self.runs.iter().map(|r| r.p99.as_secs_f64())))
    }

    /// Failed requests of every round.
    pub(super) fn errors(&self) -> u64 {
        self.runs.iter().map(WrkRun::errors).sum()
    }

    pub(super) fn requests(&self) -> u64 {
        self.runs.iter().map(|r| r.requests).sum()
    }

    /// The summary line of the rounds: medians, and every failure.
    pub(super) fn summary(&self) -> String {
        format!(
            "{:.0} rps, p50 {:.1} ms, p99 {:.1} ms (medians of {} rounds), {} errors of {}",
            self.per_second(),
            super::ms(self.p50()),
            super::ms(self.p99()),
            self.runs.len(),
            self.errors(),
            self.requests()
        )
    }
}

/// Both sides of a phase.
#[derive(Default)]
pub(super) struct Measured {
    pub(super) emporium: Rounds,
    /// None when the floor does not serve the phase.
    pub(super) floor: Option<Rounds>,
}

impl Measured {
    /// Counts `run` unless it is a warm-up (round 0).
    pub(super) fn push(&mut self, (side, round): (Side, usize), run: WrkRun) {
        if round == 0 {
            return;
        }
        match side {
            Side::Emporium => self.emporium.runs.push(run),
            Side::Floor => self.floor.get_or_insert_default().runs.push(run),
        }
    }
}

/// The median (the mean of the middle two of an even count); 0 of nothing.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_alternate_abba_after_the_warm_ups() {
        let order: Vec<String> = schedule(3, true)
            .into_iter()
            .map(|(side, round)| format!("{} {round}", side.name()))
            .collect();
        assert_eq!(
            order,
            [
                "floor 0",
                "emporium 0",
                "emporium 1",
                "floor 1",
                "floor 2",
                "emporium 2",
                "emporium 3",
                "floor 3"
            ]
        );
        assert_eq!(
            schedule(2, false),
            [
                (Side::Emporium, 0),
                (Side::Emporium, 1),
                (Side::Emporium, 2)
            ]
        );
    }

    #[test]
    fn warm_ups_do_not_count() {
        let run = |requests| WrkRun {
            command: String::new(),
            requests,
            elapsed: Duration::from_secs(1),
            status_errors: 0,
            socket_errors: 0,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            flows: 0,
        };
        let mut measured = Measured::default();
        for (at, requests) in [
            ((Side::Floor, 0), 1),
            ((Side::Floor, 1), 10),
            ((Side::Emporium, 0), 1),
        ] {
            measured.push(at, run(requests));
        }
        assert_eq!(measured.floor.map(|f| f.requests()), Some(10));
        assert_eq!(measured.emporium.requests(), 0);
    }

    #[test]
    fn medians() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].into_iter()), 2.5);
        assert_eq!(median(std::iter::empty()), 0.0);
    }
}
