//! What `/proc` says about a process: resident memory (`VmRSS` in
//! `/proc/<pid>/status`) and CPU time used so far (`utime` + `stime` in
//! `/proc/<pid>/stat`, every thread, living or exited).

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
        let path = self.file("stat");
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let ticks = cpu_ticks(&stat).with_context(|| format!("no utime and stime in {path}"))?;
        Ok(Duration::from_millis(ticks * 1000 / TICKS_PER_SEC))
    }
}

/// `utime + stime` from a `stat` line. Fields are counted after the command
/// name, which is in parentheses and may itself hold spaces and parentheses:
/// utime and stime are the 12th and 13th after it.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_a_command_name_with_spaces() {
        let stat = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(300));
    }

    #[test]
    fn this_process_has_a_resident_set_and_cpu_time() {
        assert!(Process::This.rss_bytes().unwrap() > 0);
        Process::This.cpu_time().unwrap();
    }
}
