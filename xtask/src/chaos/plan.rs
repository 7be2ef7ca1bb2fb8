//! The round plan: how many instances each round runs on the one database, what it
//! breaks, and whether they publish to NATS. Fixed by the round's number (the seed picks
//! only the moments and which instances die), so that a few consecutive rounds, CI's
//! three among them, try every kind of crash.

/// One round's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    /// Server processes started on the database, the load spread over them.
    pub(super) instances: usize,
    pub(super) crash: Crash,
    pub(super) nats: Nats,
}

/// What a round does with NATS. Round 1 runs without it; from round 2 on every round
/// passes `NATS_URL` (the publishers then catch up the logs from their start, under
/// load), since a later round without publishers would write events the stream lacks
/// and invariant 4 says that with `NATS_URL` set every event reaches the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Nats {
    /// No `NATS_URL`: the servers publish nothing.
    Off,
    /// `NATS_URL` set; NATS runs throughout.
    On,
    /// `NATS_URL` set, and NATS `kill -9`ed at a random moment of the load and started
    /// again on its store after a random while, the load still on. Besides the crash.
    Killed,
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
    /// one, two and three instances. NATS as [`Nats`] says, killed in every odd round
    /// from the third: with a Postgres crash, a kill of all, a kill that leaves some.
    pub(super) fn of_round(round: u32) -> Plan {
        let nats = match round {
            ..=1 => Nats::Off,
            _ if round.is_multiple_of(2) => Nats::On,
            _ => Nats::Killed,
        };
        let servers = |instances, kill, when| Plan {
            instances,
            crash: Crash::Servers { kill, when },
            nats,
        };
        let postgres = |instances| Plan {
            instances,
            crash: Crash::Postgres,
            nats,
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

    /// Whether its servers get `NATS_URL`.
    pub(super) fn publishes(self) -> bool {
        self.nats != Nats::Off
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
        assert!(
            ci.iter().any(|p| p.nats == Nats::Killed),
            "--rounds 3 kills NATS: {ci:?}"
        );
    }

    #[test]
    fn nats_once_configured_stays_and_is_killed_within_three_rounds() {
        let plans: Vec<Plan> = (1..=24).map(Plan::of_round).collect();
        let first = plans.iter().position(|p| p.publishes()).unwrap();
        assert!(first < 2, "NATS comes within CI's rounds: {plans:?}");
        assert!(plans[first..].iter().all(|p| p.publishes()), "{plans:?}");
        for three in plans[first..].windows(3) {
            assert!(three.iter().any(|p| p.nats == Nats::Killed), "{three:?}");
        }
        let killed: Vec<Crash> = plans
            .iter()
            .filter(|p| p.nats == Nats::Killed)
            .map(|p| p.crash)
            .collect();
        assert!(
            killed.contains(&Crash::Postgres),
            "NATS and Postgres killed"
        );
        for survive in [false, true] {
            assert!(
                plans
                    .iter()
                    .any(|p| p.nats == Nats::Killed
                        && p.survivors().is_some_and(|n| (n > 0) == survive)),
                "NATS killed with servers, some left serving: {survive}"
            );
        }
    }
}
