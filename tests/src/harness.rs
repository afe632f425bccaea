//! The harness shared by all tests of one test binary: the payload, and either this
//! machine (direct KVM) or one nested KVM host, set up on first use.

use crate::direct;
use crate::environment::{self, Environment, EnvironmentError};
use crate::nested::{ChannelError, NestedError, NestedHost};
use crate::outcome::Outcome;
use crate::payload::{self, PayloadError};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Why the harness could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Environment(#[from] EnvironmentError),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    Nested(#[from] NestedError),
}

/// The KVM host the scenarios of this test binary run on.
pub struct Harness {
    environment: Environment,
    /// The payload as the scenarios see it (`/payload` inside the nested host).
    payload: PathBuf,
    /// The payload directory on this machine.
    local_payload: PathBuf,
    work: PathBuf,
    /// The nested host and how many times it was booted (nested mode only).
    host: Option<Mutex<(Arc<NestedHost>, u32)>>,
    /// Set once the nested host stopped answering and could not be replaced: later
    /// scenarios fail at once with this reason instead of each waiting out its timeout.
    broken: Mutex<Option<String>>,
    /// When the harness was set up, and how long its scenarios may take in all.
    started: Instant,
    budget: Duration,
    next_scratch: AtomicU64,
}

/// Time all scenarios of one test binary may take together (`KVM_TESTS_BUDGET_SECS`):
/// past it, scenarios fail at once, so a machine on which every guest hangs still ends
/// the run in bounded time, with the first failures' output to read.
const DEFAULT_BUDGET: Duration = Duration::from_secs(1800);

/// How often a scenario is run again after an environment flake (see [`is_flake`]).
const FLAKE_RETRIES: u32 = 2;

/// Emulated SVM under QEMU TCG occasionally triple-faults a guest early in its boot
/// (seen at random points of the kernel's start-up, with either guest kernel, about
/// once in ten boots, more often with two guests at once), and once (2026-12-04, a
/// 2-vCPU guest in a fresh CI-like run) left a guest's kernel stalled right after it
/// switched to kvm-clock until the scenario's own `timeout -s KILL` ended the vmm
/// (`vmm exit status: 137`). A run whose guest shut down or stalled before its `/init`
/// printed anything is therefore repeated, saying so; a guest that reached `/init` and
/// then failed is never retried, nor is anything on direct KVM.
fn is_flake(outcome: &Outcome) -> bool {
    let o = &outcome.output;
    (o.contains("guest shut down (triple fault or reset)") || o.contains("vmm exit status: 137"))
        && !o.contains("guest-init: started as pid")
}

/// A host that did not answer a request, not even when the request's own timeout ran
/// out inside it: its kernel is stuck. Seen on 2026-11-22, once at the first guest boot of
/// a run (the console said nothing); the host is killed and a new one booted.
fn is_hung(error: &NestedError) -> bool {
    matches!(
        error,
        NestedError::Request {
            source: ChannelError::NoAnswer { .. },
            ..
        }
    )
}

/// The harness of this test binary, set up by the first caller (payload build and, on
/// machines without hardware virtualization, the nested host boot).
pub fn harness() -> Result<&'static Harness, &'static HarnessError> {
    static HARNESS: OnceLock<Result<Harness, HarnessError>> = OnceLock::new();
    HARNESS.get_or_init(Harness::start).as_ref()
}

/// Runs `script` on the KVM host (see [`Harness::run`]). Panics if the harness cannot
/// be set up: the failing test then reports why.
pub fn run(script: &str, timeout: Duration) -> Outcome {
    match harness() {
        Ok(h) => h.run(script, timeout),
        Err(e) => panic!("no KVM host for the test: {e}"),
    }
}

impl Harness {
    fn start() -> Result<Harness, HarnessError> {
        let started = Instant::now();
        let environment = environment::detect()?;
        let work = payload::work_dir()?;
        let local_payload = work.join("payload");
        payload::build(&local_payload)?;
        let (payload, host) = match environment {
            Environment::Direct => (local_payload.clone(), None),
            Environment::Nested => {
                let image = work.join("payload.ext4");
                payload::ext4_image(&local_payload, &image)?;
                let host = NestedHost::boot(&work.join("host.1"), &image)?;
                (
                    PathBuf::from("/payload"),
                    Some(Mutex::new((Arc::new(host), 1))),
                )
            }
        };
        eprintln!(
            "kvm-tests: {environment}; payload {} ({}); ready in {:.1}s",
            local_payload.display(),
            fs::read_to_string(local_payload.join("guest/kernel-origin"))
                .unwrap_or_default()
                .trim(),
            started.elapsed().as_secs_f64()
        );
        Ok(Harness {
            environment,
            payload,
            local_payload,
            work,
            host,
            broken: Mutex::new(None),
            started,
            budget: std::env::var("KVM_TESTS_BUDGET_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_BUDGET),
            next_scratch: AtomicU64::new(1),
        })
    }

    /// Direct KVM or nested host.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// The payload directory as scenarios see it (`$PAYLOAD`).
    pub fn payload(&self) -> &Path {
        &self.payload
    }

    /// The payload directory on this machine (to read what the scenarios will find).
    pub fn local_payload(&self) -> &Path {
        &self.local_payload
    }

    /// Which guest kernel the payload has: "kernel-config", "debian-cloud" or "env".
    pub fn kernel_origin(&self) -> String {
        fs::read_to_string(self.local_payload.join("guest/kernel-origin"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Runs `script` with `sh` on the KVM host, in a fresh scratch directory (`$SCRATCH`,
    /// the working directory), with `$PAYLOAD` set, `$PAYLOAD/bin` first on `PATH`,
    /// `$PAYLOAD/lib` on `LD_LIBRARY_PATH` and `$OUTER_ADDR` the address at which the
    /// KVM host reaches services listening on this machine's 127.0.0.1 (10.0.2.2 from the
    /// nested host, 127.0.0.1 directly). After `timeout` the script's process group is
    /// killed. Errors of the harness itself (host gone, no answer) panic with the host's
    /// console. In nested mode a scenario whose guest died before its `/init` (or whose
    /// host died) is run again, at most twice (tests/README.md, "Flakes").
    pub fn run(&self, script: &str, timeout: Duration) -> Outcome {
        self.run_with(script, timeout, FLAKE_RETRIES)
    }

    /// [`Harness::run`] without the repeats, for a scenario that is not one guest boot
    /// (a daemon whose tasks' VMs come and go; its caller handles their flakes).
    pub fn run_once(&self, script: &str, timeout: Duration) -> Outcome {
        self.run_with(script, timeout, 0)
    }

    fn run_with(&self, script: &str, timeout: Duration, retries: u32) -> Outcome {
        let Some(host) = &self.host else {
            return match self.run_direct(script, timeout) {
                Ok(outcome) => outcome,
                Err(e) => panic!("the harness could not run the scenario: {e}"),
            };
        };
        let broken = self
            .broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(reason) = broken {
            panic!("the nested host is unusable since an earlier scenario: {reason}");
        }
        if self.started.elapsed() > self.budget {
            panic!(
                "the KVM tests ran past their budget of {}s (KVM_TESTS_BUDGET_SECS): not \
                 starting another scenario; see the first failures",
                self.budget.as_secs()
            );
        }
        let mut notes = String::new();
        let mut attempt = 0;
        loop {
            let (current, boots) = {
                let guard = host.lock().unwrap_or_else(|e| e.into_inner());
                (guard.0.clone(), guard.1)
            };
            let result = current.run(script, timeout);
            attempt += 1;
            match result {
                Ok(mut outcome) if attempt <= retries && is_flake(&outcome) => {
                    eprintln!("kvm-tests: the guest died or stalled before /init; running the scenario again");
                    notes.push_str(&format!(
                        "kvm-tests: attempt {attempt}: the guest died or stalled before /init (nested TCG flake), output:\n{}\n",
                        outcome.output
                    ));
                    outcome.output.clear();
                }
                Ok(mut outcome) => {
                    notes.push_str(&outcome.output);
                    outcome.output = notes;
                    return outcome;
                }
                Err(e) if attempt <= retries && (!current.is_alive() || is_hung(&e)) => {
                    let what = if is_hung(&e) { "hung" } else { "died" };
                    eprintln!("kvm-tests: the nested host {what} ({e}); booting a new one");
                    notes.push_str(&format!(
                        "kvm-tests: attempt {attempt}: the nested host {what}: {e}\n"
                    ));
                    self.reboot_host(host, boots);
                }
                Err(e) => {
                    if !current.is_alive() || is_hung(&e) {
                        *self.broken.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(e.to_string());
                    }
                    panic!("{notes}the harness could not run the scenario: {e}")
                }
            }
        }
    }

    /// Replaces the nested host that was boot number `boots` (unless another scenario
    /// already did). Panics if the new host does not come up.
    fn reboot_host(&self, host: &Mutex<(Arc<NestedHost>, u32)>, boots: u32) {
        let mut guard = host.lock().unwrap_or_else(|e| e.into_inner());
        if guard.1 != boots {
            return;
        }
        guard.0.kill();
        let image = self.work.join("payload.ext4");
        let dir = self.work.join(format!("host.{}", boots + 1));
        match NestedHost::boot(&dir, &image) {
            Ok(new) => *guard = (Arc::new(new), boots + 1),
            Err(e) => {
                let reason = format!("the nested host died and a new one did not come up: {e}");
                *self.broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
                panic!("{reason}")
            }
        }
    }

    fn run_direct(&self, script: &str, timeout: Duration) -> Result<Outcome, direct::DirectError> {
        let n = self.next_scratch.fetch_add(1, Ordering::Relaxed);
        let scratch = self.work.join(format!("scratch.{n}"));
        let out_path = self.work.join(format!("scratch.{n}.out"));
        direct::run(&scratch, &out_path, &self.payload, script, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(output: &str) -> Outcome {
        Outcome {
            status: 1,
            output: output.into(),
        }
    }

    #[test]
    fn only_a_guest_that_died_before_init_is_a_flake() {
        let crash = "INFO vcpu0 vmm::vstate::vcpu: vCPU 0: guest shut down (triple fault or reset)";
        assert!(is_flake(&outcome(&format!("[ 2.0] Spectre V1\n{crash}\n"))));
        assert!(!is_flake(&outcome(&format!(
            "guest-init: started as pid 1\n{crash}\n"
        ))));
        assert!(!is_flake(&outcome("FAILED: guest did not reach init\n")));
        let stalled = "[ 0.88] clocksource: Switched to clocksource kvm-clock\nKilled\nvmm exit status: 137\n";
        assert!(is_flake(&outcome(stalled)));
        assert!(!is_flake(&outcome(&format!(
            "guest-init: started as pid 1\n{stalled}"
        ))));
    }

    #[test]
    fn a_host_that_never_answered_is_hung() {
        let request = |source| NestedError::Request {
            source,
            console: "--- console".into(),
        };
        let hung = request(ChannelError::NoAnswer { secs: 210 });
        assert!(is_hung(&hung));
        assert_eq!(
            hung.to_string(),
            "no answer from the nested host within 210s\n--- console"
        );
        assert!(!is_hung(&request(ChannelError::Closed)));
    }
}
