//! What `/proc` says about a process: resident memory (`VmRSS` in
//! `/proc/<pid>/status`) and CPU time used so far (`utime` + `stime` in
//! `/proc/<pid>/stat`, every thread, living or exited); and the CPU time of
//! a whole Postgres server on this machine, backends included.

use std::time::Duration;

use anyhow::Context as _;

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, which
/// Linux fixes at 100 on every architecture it exposes to user space.
const TICKS_PER_SEC: u64 = 100;

/// Which process: a child's pid, or this one.
#[derive(Debug, Clone, Copy)]
pub enum Process {
    Pid(u32),
    This,
}

impl Process {
    fn file(self, name: &str) -> String {
        match self {
            Process::Pid(pid) => format!("/proc/{pid}/{name}"),
            Process::This => format!("/proc/self/{name}"),
        }
    }

    /// Resident set size, in bytes.
    pub fn rss_bytes(self) -> anyhow::Result<u64> {
        let path = self.file("status");
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .with_context(|| format!("no VmRSS in {path}"))?;
        Ok(kib * 1024)
    }

    /// User plus system CPU time so far.
    pub fn cpu_time(self) -> anyhow::Result<Duration> {
        self.stat_time(cpu_ticks)
    }

    /// CPU time of the children this process has waited for, so far: a
    /// child's time is added when it is reaped, so the difference of two
    /// readings around one child's run and `wait` is that child's CPU.
    pub fn reaped_children_cpu_time(self) -> anyhow::Result<Duration> {
        self.stat_time(|stat| Some(cpu_ticks_with_reaped(stat)? - cpu_ticks(stat)?))
    }

    /// The CPU time that `ticks` reads from the process's `stat` line.
    fn stat_time(self, ticks: fn(&str) -> Option<u64>) -> anyhow::Result<Duration> {
        let path = self.file("stat");
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let ticks = ticks(&stat).with_context(|| format!("no CPU times in {path}"))?;
        Ok(duration(ticks))
    }
}

/// A Postgres server running on this machine, known by its postmaster: the
/// process that forks a backend for each connection and reaps it when the
/// connection closes.
#[derive(Debug, Clone, Copy)]
pub struct Postmaster(u32);

impl Postmaster {
    /// The postmaster of the backend with pid `backend` (what
    /// `pg_backend_pid()` answered), if that backend runs on this machine:
    /// both it and its parent must be processes named `postgres`.
    pub fn of_backend(backend: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{backend}/stat")).ok()?;
        let (name, parent) = (command_name(&stat)?, parent_pid(&stat)?);
        let parent_stat = std::fs::read_to_string(format!("/proc/{parent}/stat")).ok()?;
        (name == "postgres" && command_name(&parent_stat)? == "postgres").then_some(Postmaster(parent))
    }

    /// CPU time the server has used so far: the postmaster's own, that of
    /// the backends it has reaped, and that of those still running. A
    /// backend that exits between two readings moves from the third to the
    /// second, so a difference of two readings counts it once; one reaped
    /// while a reading is under way is missed by that reading, so read
    /// when connections are not closing.
    pub fn cpu_time(self) -> anyhow::Result<Duration> {
        let own_and_reaped = Process::Pid(self.0).stat_time(cpu_ticks_with_reaped)?;
        let mut running = 0;
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            // A process may exit between the listing and the read.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            if parent_pid(&stat) == Some(self.0) {
                running += cpu_ticks(&stat).unwrap_or(0);
            }
        }
        Ok(own_and_reaped + duration(running))
    }
}

/// `ticks` of `USER_HZ` as a duration.
fn duration(ticks: u64) -> Duration {
    Duration::from_millis(ticks * 1000 / TICKS_PER_SEC)
}

/// The fields of a `stat` line after the command name, which is in
/// parentheses and may itself hold spaces and parentheses: the state first.
fn fields_after_name(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace())
}

/// The command name of a `stat` line.
fn command_name(stat: &str) -> Option<&str> {
    Some(&stat[stat.find('(')? + 1..stat.rfind(')')?])
}

/// The parent's pid in a `stat` line: the 2nd field after the name.
fn parent_pid(stat: &str) -> Option<u32> {
    fields_after_name(stat)?.nth(1)?.parse().ok()
}

/// `utime + stime` from a `stat` line: the 12th and 13th fields after the
/// name.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let mut fields = fields_after_name(stat)?.skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `utime + stime + cutime + cstime` from a `stat` line: the process's own
/// CPU time and that of the children it has waited for.
fn cpu_ticks_with_reaped(stat: &str) -> Option<u64> {
    let mut fields = fields_after_name(stat)?.skip(11);
    (0..4).map(|_| fields.next()?.parse::<u64>().ok()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_a_command_name_with_spaces() {
        let stat = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(cpu_ticks_with_reaped(stat), Some(300));
        assert_eq!(command_name(stat), Some("tokio (rt) 1"));
        assert_eq!(parent_pid(stat), Some(1));
    }

    #[test]
    fn reaped_children_count_with_the_parent() {
        let stat = "7 (postgres) S 1 7 7 0 -1 4194560 1000 0 0 0 250 50 700 300 20 0 1 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(cpu_ticks_with_reaped(stat), Some(1300));
    }

    #[test]
    fn a_process_that_is_not_postgres_has_no_postmaster() {
        assert!(Postmaster::of_backend(std::process::id()).is_none());
    }

    #[test]
    fn this_process_has_a_resident_set_and_cpu_time() {
        assert!(Process::This.rss_bytes().unwrap() > 0);
        Process::This.cpu_time().unwrap();
    }
}
