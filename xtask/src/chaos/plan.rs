//! The round plan: how many instances each round runs on the one database, and what it
//! breaks. Fixed by the round's number (the seed picks only the moments and which
//! instances die), so that a few consecutive rounds, CI's three among them, try every
//! kind of crash.

/// One round's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    /// Server processes started on the database, the load spread over them.
    pub(super) instances: usize,
    pub(super) crash: Crash,
}

/// What a round breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Crash {
    /// `kill -9` `kill` of the instances, picked at random, at `when`. The others keep
    /// serving the load; the killed ones are started again under it.
    Servers { kill: usize, when: Moment },
    /// Crash Postgres under every instance (immediate shutdown), then start it again.
    Postgres,
}

/// When servers are killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Moment {
    /// After a random 0.5 to 3 s of load.
    Random,
    /// After a random warm-up, as soon as gateway calls are in flight.
    GatewayCalls,
}

impl Plan {
    /// Round `round`'s. Within any three consecutive rounds: a Postgres crash, a kill that
    /// leaves instances serving, a kill of every instance, and three instances (so
    /// `--rounds 3` tries each, a kill amid gateway calls among them). Within any six: one,
    /// two and all three of three instances killed, each kind of kill at each moment, and
    /// one, two and three instances.
    pub(super) fn of_round(round: u32) -> Plan {
        let servers = |instances, kill, when| Plan {
            instances,
            crash: Crash::Servers { kill, when },
        };
        let postgres = |instances| Plan {
            instances,
            crash: Crash::Postgres,
        };
        match round % 6 {
            1 => servers(3, 1, Moment::GatewayCalls),
            2 => servers(3, 3, Moment::Random),
            3 => postgres(3),
            4 => servers(3, 2, Moment::Random),
            5 => servers(2, 2, Moment::GatewayCalls),
            _ => postgres(1),
        }
    }

    /// Instances left serving by the crash, if it kills servers.
    pub(super) fn survivors(self) -> Option<usize> {
        match self.crash {
            Crash::Servers { kill, .. } => Some(self.instances - kill),
            Crash::Postgres => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crash_comes_within_a_few_rounds() {
        let plans = |first: u32, n: u32| (first..first + n).map(Plan::of_round).collect();
        for first in 1..=12 {
            let three: Vec<Plan> = plans(first, 3);
            let holds = |what: &str, test: &dyn Fn(&Plan) -> bool| {
                assert!(
                    three.iter().any(test),
                    "rounds {first}..+3 lack {what}: {three:?}"
                );
            };
            holds("a Postgres crash", &|p| p.crash == Crash::Postgres);
            holds("survivors", &|p| p.survivors().is_some_and(|n| n > 0));
            holds("every instance killed", &|p| p.survivors() == Some(0));
            holds("three instances", &|p| p.instances == 3);
            let six: Vec<Plan> = plans(first, 6);
            for kill in 1..=3 {
                let crash = |p: &Plan| {
                    p.instances == 3
                        && matches!(p.crash, Crash::Servers { kill: k, .. } if k == kill)
                };
                assert!(
                    six.iter().any(crash),
                    "rounds {first}..+6 never kill {kill} of 3"
                );
            }
            for every in [false, true] {
                for moment in [Moment::Random, Moment::GatewayCalls] {
                    let found = six.iter().any(|p| {
                        p.survivors().is_some_and(|n| (n == 0) == every)
                            && matches!(p.crash, Crash::Servers { when, .. } if when == moment)
                    });
                    assert!(found, "rounds {first}..+6 lack every={every} at {moment:?}");
                }
            }
            for instances in 1..=3 {
                assert!(six.iter().any(|p| p.instances == instances));
            }
            for plan in six {
                if let Crash::Servers { kill, .. } = plan.crash {
                    assert!((1..=plan.instances).contains(&kill), "{plan:?}");
                }
            }
        }
        let ci: Vec<Plan> = plans(1, 3);
        assert!(
            ci.iter().any(|p| matches!(
                p.crash,
                Crash::Servers {
                    when: Moment::GatewayCalls,
                    ..
                }
            )),
            "--rounds 3 kills amid gateway calls: {ci:?}"
        );
    }
}
