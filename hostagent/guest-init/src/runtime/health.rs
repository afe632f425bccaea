//! Health checks: CMD / CMD-SHELL run inside the container on its interval, with a timeout.

use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use guest_proto::HealthCheck;

use super::shim::{ShimConfig, ShimMode};
use super::spawn::spawn_shim;
use super::Event;

/// Delay before the first check (Docker waits a full interval; we check early so that
/// HEALTHY dependencies start promptly, failures inside startPeriod do not count anyway).
pub const FIRST_CHECK_DELAY: Duration = Duration::from_secs(1);
const MAX_OUTPUT: u64 = 4096;

/// The command a health check runs.
pub fn check_argv(h: &HealthCheck) -> Vec<String> {
    match h.command.first().map(String::as_str) {
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), h.command[1..].join(" ")],
        _ => h.command[1..].to_vec(),
    }
}

pub struct Checker {
    pub container: String,
    pub check: HealthCheck,
    pub target_pid: i32,
    /// Template for the exec (env, user, cwd, cgroup of the container).
    pub base: ShimConfig,
    pub shim_exe: PathBuf,
    pub config_file: PathBuf,
    pub alive: Arc<AtomicBool>,
    pub events: Sender<Event>,
}

fn sleep_while(alive: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if !alive.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(
            Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())),
        );
    }
    alive.load(Ordering::Relaxed)
}

impl Checker {
    /// Loops until the container stops, reporting each check's result.
    pub fn run(self) {
        let mut delay = FIRST_CHECK_DELAY;
        while sleep_while(&self.alive, delay) {
            delay = Duration::from_secs(self.check.interval_secs().into());
            let (ok, output) = self.once();
            if !self.alive.load(Ordering::Relaxed) {
                break;
            }
            if self
                .events
                .send(Event::Health {
                    name: self.container.clone(),
                    ok,
                    output,
                })
                .is_err()
            {
                break;
            }
        }
    }

    /// Runs the check once: (passed, output).
    pub fn once(&self) -> (bool, String) {
        let mut cfg = self.base.clone();
        cfg.mode = ShimMode::Exec {
            pid: self.target_pid,
        };
        cfg.argv = check_argv(&self.check);
        let mut sp = match spawn_shim(
            &self.shim_exe,
            &cfg,
            &self.config_file,
            Stdio::piped(),
            Stdio::null(),
        ) {
            Ok(s) => s,
            Err(e) => return (false, e.to_string()),
        };
        let reader = sp.shim.stdout.take().map(|out| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = out.take(MAX_OUTPUT).read_to_string(&mut s);
                s
            })
        });
        let deadline = Instant::now() + Duration::from_secs(self.check.timeout_secs().into());
        let status = loop {
            match sp.shim.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) | Err(_) => {
                    // Killing the shim kills the check (parent-death signal).
                    let _ = sp.shim.kill();
                    let _ = sp.shim.wait();
                    break None;
                }
            }
        };
        let output = reader.and_then(|h| h.join().ok()).unwrap_or_default();
        match status {
            Some(st) => (st.success(), output),
            None => (
                false,
                format!(
                    "health check timed out after {} s",
                    self.check.timeout_secs()
                ),
            ),
        }
    }
}
