//! A host process named by its pid AND its start time, so that a recycled pid is never
//! mistaken for the vmm (or relay) of a task after an agent restart.

use serde::{Deserialize, Serialize};
use std::io;

/// A process: pid plus start time (clock ticks since boot, `/proc/<pid>/stat` field 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcIdent {
    /// The pid (as the host sees it).
    pub pid: i32,
    /// Its start time.
    pub start_ticks: u64,
}

/// The start time in `/proc/<pid>/stat` text (the command name may hold spaces and `)`).
pub fn parse_start_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields after the command: state (3) ... starttime (22).
    after.split_whitespace().nth(19)?.parse().ok()
}

fn stat_of(pid: i32) -> io::Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
}

impl ProcIdent {
    /// The running process `pid`.
    pub fn of(pid: i32) -> io::Result<ProcIdent> {
        if pid <= 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad pid"));
        }
        let start_ticks = parse_start_ticks(&stat_of(pid)?)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc stat"))?;
        Ok(ProcIdent { pid, start_ticks })
    }

    /// Whether this very process still runs (a zombie counts as gone).
    pub fn alive(&self) -> bool {
        match stat_of(self.pid) {
            Ok(s) => {
                let state = s
                    .rfind(')')
                    .and_then(|i| s[i + 1..].split_whitespace().next());
                parse_start_ticks(&s) == Some(self.start_ticks) && state != Some("Z")
            }
            Err(_) => false,
        }
    }

    /// Sends `sig` if this very process still runs.
    pub fn signal(&self, sig: i32) -> bool {
        if !self.alive() {
            return false;
        }
        // SAFETY: kill(2) with a plain pid and signal number; no memory is passed.
        unsafe { libc::kill(self.pid, sig) == 0 }
    }

    /// SIGKILL, then waits (up to `timeout`) until it is gone.
    pub async fn kill_and_wait(&self, timeout: std::time::Duration) -> bool {
        self.signal(libc::SIGKILL);
        self.wait_gone(timeout).await
    }

    /// Waits up to `timeout` for the process to end; whether it did.
    pub async fn wait_gone(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.alive() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_from_stat() {
        let s = "123 (a) b) c) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 50";
        assert_eq!(parse_start_ticks(s), Some(98765));
        assert_eq!(parse_start_ticks("garbage"), None);
        assert_eq!(parse_start_ticks("1 (x) S 1"), None);
    }

    #[tokio::test]
    async fn identifies_and_kills_a_real_process() {
        let me = ProcIdent::of(std::process::id() as i32).unwrap();
        assert!(me.alive());
        let other = ProcIdent {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(
            !other.alive(),
            "same pid, other start time: not the same process"
        );
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let p = ProcIdent::of(child.id() as i32).unwrap();
        assert!(p.alive());
        let reaper = std::thread::spawn(move || child.wait());
        assert!(p.kill_and_wait(std::time::Duration::from_secs(5)).await);
        assert!(!p.alive());
        reaper.join().unwrap().unwrap();
    }
}
