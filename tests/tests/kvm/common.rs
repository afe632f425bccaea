//! Helpers shared by the scenario modules.

use kvm_tests::{Harness, Outcome};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Time a scenario that boots one guest may take (nested TCG on a busy machine).
pub const BOOT_SECS: u64 = 150;

/// The harness, or the test fails with the reason it could not be set up.
pub fn harness() -> &'static Harness {
    match kvm_tests::harness() {
        Ok(h) => h,
        Err(e) => panic!("no KVM host for the test: {e}"),
    }
}

/// Fails unless the payload's guest kernel is the kernel-config one: Debian's cloud
/// kernel (the fallback) has virtio-mmio only as a module and no MP-table parsing
/// (`# CONFIG_X86_MPPARSE is not set`: without ACPI it sees one CPU).
#[track_caller]
pub fn require_kernel_config_kernel(why: &str) {
    assert_eq!(
        harness().kernel_origin(),
        "kernel-config",
        "{why} needs the kernel-config guest kernel (run kernel-config/build before the tests)"
    );
}

/// Runs `script` with a timeout of `secs` and prints its output (shown on failure).
/// One at a time: two guests at once inside the nested host make its emulated SVM
/// fail far more often (tests/README.md, "Flakes of the emulated SVM").
pub fn run(script: &str, secs: u64) -> Outcome {
    let _turn = turn();
    run_in_turn(script, secs)
}

/// The turn [`run`] takes: a test that runs several scenarios at once (a daemon and the
/// scenarios that talk to it) holds it throughout and uses [`run_in_turn`].
pub fn turn() -> MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`run`] for a caller that holds [`turn`].
pub fn run_in_turn(script: &str, secs: u64) -> Outcome {
    report(harness().run(script, Duration::from_secs(secs)))
}

/// [`run_in_turn`] without the harness's repeats of a guest that died early (for a
/// daemon scenario, see `Harness::run_once`).
pub fn run_once_in_turn(script: &str, secs: u64) -> Outcome {
    report(harness().run_once(script, Duration::from_secs(secs)))
}

fn report(outcome: Outcome) -> Outcome {
    println!(
        "--- scenario exit status {}, output:\n{}",
        outcome.status, outcome.output
    );
    outcome
}

/// Fails the test with the scenario's output unless `output` contains `needle`.
#[track_caller]
pub fn expect(outcome: &Outcome, needle: &str) {
    assert!(
        outcome.output.contains(needle),
        "expected {needle:?} in the scenario's output (status {}):\n{}",
        outcome.status,
        outcome.output
    );
}

/// Returns early (the test passes, saying it was skipped) unless every listed vmm
/// capability is enabled in KVM_TESTS_ENABLE (see `kvm_tests::vm::enabled`): tests for
/// what the vmm cannot do yet are kept but switched off.
macro_rules! require {
    ($($feature:literal),+) => {
        $(
            if !kvm_tests::vm::enabled($feature) {
                eprintln!(
                    "SKIPPED: needs vmm capability {:?}; add it to KVM_TESTS_ENABLE to run",
                    $feature
                );
                return;
            }
        )+
    };
}
pub(crate) use require;
