//! Boot-time benchmark: InstanceStart to the guest's /init, measured by the vmm's
//! boot-timer device (the guest's /init writes it first thing; the vmm logs
//! `guest boot marker: <ms> ms since InstanceStart`). Median of 10 boots (BOOTS=N to
//! change), serial console off, printed with the environment (direct KVM or nested).
//!
//!   scripts/build-static && cargo bench -p kvm-tests --bench boot_time

use kvm_tests::vm::default_boot_args;
use kvm_tests::VmConfig;
use std::time::Duration;

fn main() {
    let boots: usize = std::env::var("BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let harness = match kvm_tests::harness() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("boot_time: no KVM host: {e}");
            std::process::exit(1);
        }
    };
    let origin = harness.kernel_origin();
    // No console=: the serial console is off (the kernel does not print at all).
    let args = default_boot_args(&origin).replace("console=ttyS0", "quiet");
    let vm = VmConfig::new(harness, "quiet-reboot")
        .boot_args(&format!("{args} guest.action=quiet-reboot"))
        .mem_mib(128);
    let script = format!(
        "{}\nfor i in $(seq {boots}); do\n\
         \x20   timeout -s KILL 120 vmm --no-api --config-file vm.json --level Info 2>&1 \
         | grep -o 'guest boot marker: [0-9.]* ms' || echo 'boot failed'\n\
         done\n",
        kvm_tests::vm::write_file("vm.json", &vm.config_file())
    );
    let outcome = harness.run(&script, Duration::from_secs(120 * boots as u64 + 60));
    let mut ms = kvm_tests::bench::ms_values(&outcome.output, "guest boot marker: ");
    let stats = kvm_tests::bench::median_min_max(&mut ms);
    let (Some((median, min, max)), true) = (stats, ms.len() == boots) else {
        eprintln!(
            "boot_time: {} of {boots} boots reported the marker; output:\n{}",
            ms.len(),
            outcome.output
        );
        std::process::exit(1);
    };
    println!("boot time, InstanceStart to guest /init (boot-timer device)");
    println!("  environment:  {}", harness.environment());
    println!("  guest kernel: {origin}, serial console off, 1 vCPU, 128 MiB, initramfs");
    println!("  boots:        {boots}");
    println!("  median {median:.1} ms   min {min:.1} ms   max {max:.1} ms");
}
