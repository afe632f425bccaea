//! Devices benchmark (issue 3): block sequential read/write and net throughput over the
//! tap, each with the host CPU time the vmm spent per GiB moved. Runs
//! `tests/scenarios/devices-bench/devices-bench` (which takes the VMM by path: any VMM that
//! reads a Firecracker config file can be measured) on the KVM host: inside the nested
//! host on machines without hardware virtualization. MIB=N sets the size of each block workload
//! (default 256), NET_MIB=N of each network one (default 32: under nested TCG the guest
//! sends slowly), VMM=path another VMM on the KVM host.
//!
//!   scripts/build-static && kernel-config/build && cargo bench -p kvm-tests --bench devices_throughput

use std::time::Duration;

fn main() {
    let size = |var: &str, default: u32| -> u32 {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (mib, net_mib) = (size("MIB", 256), size("NET_MIB", 32));
    let harness = match kvm_tests::harness() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("devices_throughput: no KVM host: {e}");
            std::process::exit(1);
        }
    };
    let vmm = std::env::var("VMM").unwrap_or_else(|_| "$PAYLOAD/bin/vmm".into());
    let script = format!(
        "sh \"$PAYLOAD/scenarios/devices-bench/devices-bench\" --vmm \"{vmm}\" \
         --kernel \"$PAYLOAD/guest/vmlinux\" --size-mib {mib} --net-mib {net_mib} --work \"$SCRATCH/bench\""
    );
    // Emulated SVM in the nested host now and then resets a guest mid-run (tests/README.md,
    // "Flakes"): one more attempt, saying so.
    let mut outcome = harness.run_once(&script, Duration::from_secs(3600));
    if outcome.status != 0 {
        eprintln!(
            "devices_throughput: attempt 1 failed (status {}), running it again:\n{}",
            outcome.status, outcome.output
        );
        outcome = harness.run_once(&script, Duration::from_secs(3600));
    }
    println!("devices throughput ({})", harness.environment());
    println!("  guest kernel: {}", harness.kernel_origin());
    print!("{}", outcome.output);
    if outcome.status != 0 {
        eprintln!(
            "devices_throughput: the bench failed (status {})",
            outcome.status
        );
        std::process::exit(1);
    }
}
