//! Helpers shared by the scenario modules.

use kvm_tests::{Harness, Outcome};
use std::time::Duration;

/// Time a scenario that boots one guest may take (nested TCG on a busy machine).
pub const BOOT_SECS: u64 = 240;

/// The harness, or the test fails with the reason it could not be set up.
pub fn harness() -> &'static Harness {
    match kvm_tests::harness() {
        Ok(h) => h,
        Err(e) => panic!("no KVM host for the test: {e}"),
    }
}

/// Runs `script` with a timeout of `secs` and prints its output (shown on failure).
pub fn run(script: &str, secs: u64) -> Outcome {
    let outcome = harness().run(script, Duration::from_secs(secs));
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

/// Returns early (the test passes, saying so) unless KVM_TESTS_LINUX_BOOT=1: the tests
/// that boot Linux under the vmm are kept but switched off until the vmm boots Linux.
macro_rules! require_linux_boot {
    () => {
        if !kvm_tests::vm::linux_boot_enabled() {
            eprintln!("SKIPPED: boots Linux under the vmm; set KVM_TESTS_LINUX_BOOT=1 to run it");
            return;
        }
    };
}
pub(crate) use require_linux_boot;
