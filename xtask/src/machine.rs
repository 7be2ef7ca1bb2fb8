//! Where a run happened (for the reports of `bench` and `soak`): cores, CPU, memory,
//! Postgres settings, date and commit, and the CPU time the machine got.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::db::{self, DbUrl};

/// Where the run happened.
pub(crate) struct Machine {
    pub(crate) cores: usize,
    pub(crate) memory_gib: f64,
    pub(crate) cpu: String,
    pub(crate) postgres: String,
    pub(crate) date: String,
    pub(crate) commit: String,
}

impl Machine {
    pub(crate) async fn read(root: &Path, url: &DbUrl) -> Result<Machine> {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
            .map_or("unknown".to_owned(), |(_, model)| model.trim().to_owned());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let client = db::connect(url).await?;
        let mut postgres = Vec::new();
        for setting in [
            "server_version",
            "shared_buffers",
            "max_connections",
            "synchronous_commit",
        ] {
            let row = client.query_one(&format!("SHOW {setting}"), &[]).await?;
            postgres.push(format!("{setting} {}", row.get::<_, String>(0)));
        }
        Ok(Machine {
            cores: cores(),
            memory_gib: memory_kib / 1024.0 / 1024.0,
            cpu,
            postgres: postgres.join(", "),
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            commit: commit(root),
        })
    }
}

/// The machine's CPU time since boot, all cores, in clock ticks (`/proc/stat`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuTimes {
    pub(crate) total: u64,
    /// Not idle and not waiting for I/O.
    pub(crate) busy: u64,
    /// Taken by the hypervisor for other guests while this machine had work to run.
    pub(crate) steal: u64,
}

impl CpuTimes {
    /// The share (0 to 1) of the time since `earlier` that the hypervisor stole.
    pub(crate) fn steal_since(&self, earlier: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        self.steal.saturating_sub(earlier.steal) as f64 / total.max(1) as f64
    }
}

pub(crate) fn cpu_times() -> Result<CpuTimes> {
    let stat = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    // user nice system idle iowait irq softirq steal (guest time is within user)
    let times: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .context("no cpu line in /proc/stat")?
        .split_whitespace()
        .take(8)
        .filter_map(|n| n.parse().ok())
        .collect();
    let at = |i: usize| times.get(i).copied().unwrap_or(0);
    let total: u64 = times.iter().sum();
    Ok(CpuTimes {
        total,
        busy: total - at(3) - at(4),
        steal: at(7),
    })
}

/// The machine's cores (what `HTTP_WORKERS` and wrk's threads are sized by).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The checked-out commit, and whether the tree differs from it.
fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) if git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty()) => {
            format!("{commit} with uncommitted changes")
        }
        Some(commit) => commit,
        None => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_a_share_of_the_time_between_two_readings() {
        let earlier = CpuTimes {
            total: 1000,
            busy: 400,
            steal: 100,
        };
        let later = CpuTimes {
            total: 1400,
            busy: 700,
            steal: 200,
        };
        assert_eq!(later.steal_since(&earlier), 0.25);
        assert_eq!(earlier.steal_since(&earlier), 0.0);
        let now = cpu_times().unwrap();
        assert!(now.busy <= now.total && now.steal <= now.total);
    }
}
