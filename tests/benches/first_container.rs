//! First-container benchmark (issue 8): vmm start to the task's first container process
//! started, measured by the vmm's boot-timer device, which guest-init writes right after
//! it started the first container (the vmm logs `guest boot marker: <ms> ms since
//! InstanceStart`). A task of one busybox container on a read-only ext4 drive, sent by
//! `guest-host` over vsock; kernel-config kernel, static guest-init initramfs, serial
//! console off, 1 vCPU, 256 MiB. Median of RUNS=N runs (default 10), printed with the
//! environment (direct KVM or nested). The scenario is
//! `tests/scenarios/guest-init/bench-first-container`.
//!
//!   scripts/build-static && kernel-config/build && cargo bench -p kvm-tests --bench first_container

use std::time::Duration;

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(10);
    let harness = match kvm_tests::harness() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("first_container: no KVM host: {e}");
            std::process::exit(1);
        }
    };
    let script = format!("sh \"$PAYLOAD/scenarios/guest-init/bench-first-container\" {runs}");
    let outcome = harness.run_once(&script, Duration::from_secs(200 * runs as u64 + 60));
    let mut ms = kvm_tests::bench::ms_values(&outcome.output, "first-container: ");
    let failed = runs - ms.len().min(runs);
    let Some((median, min, max)) = kvm_tests::bench::median_min_max(&mut ms) else {
        eprintln!(
            "first_container: no run succeeded; output:\n{}",
            outcome.output
        );
        std::process::exit(1);
    };
    println!("VM start to first container process started (boot-timer device)");
    println!("  environment:  {}", harness.environment());
    println!(
        "  guest kernel: {}, guest-init initramfs, serial console off, 1 vCPU, 256 MiB",
        harness.kernel_origin()
    );
    println!("  runs:         {} ({failed} failed)", ms.len());
    println!("  median {median:.1} ms   min {min:.1} ms   max {max:.1} ms");
    if failed > 0 {
        eprintln!(
            "first_container: {failed} run(s) failed; output:\n{}",
            outcome.output
        );
        std::process::exit(1);
    }
}
