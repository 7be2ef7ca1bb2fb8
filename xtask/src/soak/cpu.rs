//! Who used the machine's CPU during a window: the soak's own processes (the server, its
//! private Postgres cluster, xtask itself) and everything else. On a shared
//! machine everything else is what makes the latencies of two windows incomparable, so
//! the verdict judges p99 only between thirds where it stayed about the same.
//!
//! Read from `/proc`: the machine's busy time from `/proc/stat`, each process's from
//! `/proc/<pid>/stat` (`utime + stime`), the cluster's pids from `pg_stat_activity` (its
//! backends and background processes; the postmaster itself, which only forks, is not
//! listed).

use std::collections::BTreeMap;
use std::fs;

use anyhow::{Context, Result};

use crate::machine::{CpuTimes, cpu_times};

/// CPU time of the machine and of the soak's processes at the last reading.
pub(super) struct CpuMeter {
    server: u32,
    /// All cores' time, and the busy part of it, in clock ticks.
    total: u64,
    busy: u64,
    /// Each own process's time, by pid.
    ours: BTreeMap<u32, u64>,
}

impl CpuMeter {
    pub(super) fn new(server: u32) -> Result<CpuMeter> {
        let CpuTimes { total, busy, .. } = cpu_times()?;
        Ok(CpuMeter {
            server,
            total,
            busy,
            ours: BTreeMap::new(),
        })
    }

    /// The share (0 to 1) of the machine's CPU time since the last reading that went to
    /// other processes than the soak's own. `client` is connected to the soak's cluster.
    pub(super) async fn others(&mut self, client: &tokio_postgres::Client) -> Result<f64> {
        let backends = client
            .query("SELECT pid FROM pg_stat_activity", &[])
            .await
            .context("listing the cluster's processes")?;
        let pids = backends
            .iter()
            .map(|row| row.get::<_, i32>(0) as u32)
            .chain([self.server, std::process::id()]);
        let mut ours = BTreeMap::new();
        let mut used = 0;
        for pid in pids {
            // A backend that has gone since it was listed used nothing worth counting.
            if let Some(now) = process(pid) {
                used += now.saturating_sub(self.ours.get(&pid).copied().unwrap_or(0));
                ours.insert(pid, now);
            }
        }
        let CpuTimes { total, busy, .. } = cpu_times()?;
        let elapsed = total.saturating_sub(self.total).max(1);
        let others = busy.saturating_sub(self.busy).saturating_sub(used);
        (self.total, self.busy, self.ours) = (total, busy, ours);
        Ok((others as f64 / elapsed as f64).min(1.0))
    }
}

/// The user and system time of process `pid`, in ticks; `None` if it is gone.
fn process(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command, which is in parentheses and may hold spaces: field 3 on.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(ticks(11)? + ticks(12)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process_and_the_machine() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {}
        assert!(process(std::process::id()).is_some_and(|ticks| ticks > 0));
        assert_eq!(process(u32::MAX), None);
        let CpuTimes { total, busy, .. } = cpu_times().unwrap();
        assert!(total >= busy && busy > 0);
    }
}
