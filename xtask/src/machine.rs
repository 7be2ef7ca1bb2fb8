//! Where a run happened (for the reports of `bench` and `soak`): cores, CPU, memory,
//! Postgres settings, date and commit.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::Result;

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
