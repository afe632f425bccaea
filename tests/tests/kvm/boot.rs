//! Issue 4: Linux guests boot under the vmm (config file and API), see all their vCPUs,
//! get their kernel command line, shut down on Ctrl+Alt+Del, and bad kernels are refused.

use super::common::{expect, harness, require, require_kernel_config_kernel, run, BOOT_SECS};
use kvm_tests::vm::{shell_quote, Drive, SHELL_HELPERS};
use kvm_tests::VmConfig;
use std::fs;

#[test]
fn guest_boots_to_init_and_vmm_exits_zero_on_reboot() {
    require!("linux-boot");
    let vm = VmConfig::new(harness(), "reboot");
    let o = run(
        &vm.script_run_config_file("vm.json", BOOT_SECS),
        BOOT_SECS + 30,
    );
    expect(&o, "guest-init: started as pid 1");
    expect(&o, "guest-init: rebooting");
    expect(&o, "vmm exit status: 0");
    assert_eq!(o.status, 0);
}

/// A guest cannot fill the host's disk through its console: past `--serial-out-limit` the
/// vmm writes a notice and drops the rest, and the guest runs on to its reboot.
#[test]
fn console_output_past_the_limit_is_dropped_and_the_guest_runs_on() {
    require!("linux-boot");
    let vm = VmConfig::new(harness(), "reboot").vmm_flag("--serial-out-limit 4096");
    let o = run(
        &vm.script_run_config_file("vm.json", BOOT_SECS),
        BOOT_SECS + 30,
    );
    expect(
        &o,
        "[vmm: serial console output limit of 4096 bytes reached; the rest is dropped]",
    );
    // The kernel's own boot messages exceed 4 KiB, so the test init's lines are dropped.
    assert!(!o.output.contains("guest-init: rebooting"), "{}", o.output);
    expect(&o, "vmm exit status: 0");
}

#[test]
fn boot_timer_device_reports_the_guest_reaching_init() {
    require!("linux-boot");
    let vm = VmConfig::new(harness(), "reboot");
    let o = run(
        &vm.script_run_config_file("vm.json", BOOT_SECS),
        BOOT_SECS + 30,
    );
    expect(&o, "guest boot marker: ");
    expect(&o, " ms since InstanceStart");
}

/// Needs the vmm's virtio-blk device and a guest kernel with virtio-mmio built in.
#[test]
fn guest_boots_from_an_ext4_root_drive() {
    require!("linux-boot", "virtio-blk");
    require_kernel_config_kernel("booting from a virtio-blk root drive");
    let h = harness();
    let id = fs::read_to_string(h.local_payload().join("guest/rootfs-id"))
        .expect("the payload has guest/rootfs-id");
    let vm = VmConfig::new(h, "reboot").no_initrd().drive(Drive {
        id: "rootfs".into(),
        path: "@SCRATCH@/rootfs.ext4".into(),
        root: true,
        read_only: false,
    });
    let script = format!(
        "cp \"$PAYLOAD/guest/rootfs.ext4\" rootfs.ext4\n{}",
        vm.script_run_config_file("vm.json", BOOT_SECS)
    );
    let o = run(&script, BOOT_SECS + 30);
    expect(&o, &format!("guest-init: rootfs-id {}", id.trim()));
    expect(&o, "guest-init: root /dev/root ext4");
    expect(&o, "vmm exit status: 0");
}

fn boots_with_vcpus(n: u32) {
    require_kernel_config_kernel("SMP without ACPI (MP table)");
    let vm = VmConfig::new(harness(), "reboot").vcpus(n);
    let o = run(
        &vm.script_run_config_file("vm.json", BOOT_SECS),
        BOOT_SECS + 30,
    );
    expect(&o, &format!("guest-init: online cpus 0-{}", n - 1));
    expect(&o, &format!("guest-init: cpu count {n}"));
    expect(&o, "vmm exit status: 0");
}

#[test]
fn guest_with_two_vcpus_sees_both() {
    require!("linux-boot", "smp");
    boots_with_vcpus(2);
}

#[test]
fn guest_with_four_vcpus_sees_all_four() {
    require!("linux-boot", "smp");
    boots_with_vcpus(4);
}

#[test]
fn kernel_command_line_reaches_the_guest() {
    require!("linux-boot");
    let token = format!(
        "kvmtests.token={}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let vm = VmConfig::new(harness(), "reboot").boot_arg(&token);
    let o = run(
        &vm.script_run_config_file("vm.json", BOOT_SECS),
        BOOT_SECS + 30,
    );
    let line = o
        .output
        .lines()
        .find(|l| l.contains("guest-init: cmdline "))
        .unwrap_or_else(|| panic!("the guest printed no command line:\n{}", o.output));
    assert!(line.contains(&token), "{token} not in {line:?}");
    assert!(line.contains("guest.action=reboot"), "{line:?}");
}

#[test]
fn send_ctrl_alt_del_shuts_the_guest_down() {
    require!("linux-boot");
    let vm = VmConfig::new(harness(), "wait");
    let script = format!(
        r#"{SHELL_HELPERS}
API_SOCK=$SCRATCH/api.sock
vmm --api-sock "$API_SOCK" --level Info >serial.log 2>vmm.log &
vmm_pid=$!
show() {{ echo "--- serial"; cat serial.log; echo "--- vmm log"; cat vmm.log; }}
fail() {{ echo "FAILED: $1"; show; kill -9 $vmm_pid 2>/dev/null; exit 1; }}
i=0
while [ ! -S "$API_SOCK" ]; do
    i=$((i + 1)); [ $i -gt 300 ] && fail "no API socket"; sleep 0.1
done
api PUT /boot-source {boot} || fail "boot-source"
api PUT /machine-config {machine} || fail "machine-config"
api PUT /actions '{{"action_type":"InstanceStart"}}' || fail "InstanceStart"
wait_for serial.log "guest-init: waiting" {secs} $vmm_pid || fail "guest did not reach init"
api PUT /actions '{{"action_type":"SendCtrlAltDel"}}' || fail "SendCtrlAltDel"
i=0
while kill -0 $vmm_pid 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 1200 ] && fail "vmm still running 120s after SendCtrlAltDel"; sleep 0.1
done
wait $vmm_pid
status=$?
show
echo "vmm exit status: $status"
exit $status
"#,
        boot = shell_quote(&vm.boot_source()),
        machine = shell_quote(&vm.machine_config()),
        secs = BOOT_SECS,
    );
    let o = run(&script, BOOT_SECS + 180);
    expect(&o, "guest-init: waiting");
    expect(&o, "vmm exit status: 0");
    assert!(!o.output.contains("FAILED:"), "{}", o.output);
}

#[test]
fn corrupt_kernel_images_are_refused_with_an_error() {
    require!("linux-boot");
    for bad in ["corrupt-random.vmlinux", "corrupt-truncated.vmlinux"] {
        let path = harness().payload().join("guest").join(bad);
        let vm = VmConfig::new(harness(), "reboot").kernel(&path.to_string_lossy());
        let o = run(&vm.script_run_config_file("vm.json", 60), 90);
        assert_ne!(o.status, 0, "{bad} was accepted:\n{}", o.output);
        assert_ne!(o.status, 137, "the vmm hung on {bad}:\n{}", o.output);
        assert!(
            o.output.to_lowercase().contains("kernel"),
            "the error for {bad} does not mention the kernel:\n{}",
            o.output
        );
        assert!(
            !o.output.contains("guest-init"),
            "{bad} booted?\n{}",
            o.output
        );
    }
    // The API refuses it as well, with a Firecracker-style fault message.
    let path = harness().payload().join("guest/corrupt-random.vmlinux");
    let vm = VmConfig::new(harness(), "reboot").kernel(&path.to_string_lossy());
    let script = format!(
        r#"{SHELL_HELPERS}
API_SOCK=$SCRATCH/api.sock
vmm --api-sock "$API_SOCK" >serial.log 2>vmm.log &
vmm_pid=$!
i=0
while [ ! -S "$API_SOCK" ] && [ $i -lt 300 ]; do i=$((i + 1)); sleep 0.1; done
rc=0
api PUT /boot-source {boot} && api PUT /machine-config {machine} &&
    api PUT /actions '{{"action_type":"InstanceStart"}}' && rc=1
kill -9 $vmm_pid
exit $rc
"#,
        boot = shell_quote(&vm.boot_source()),
        machine = shell_quote(&vm.machine_config()),
    );
    let o = run(&script, 90);
    assert_eq!(
        o.status, 0,
        "InstanceStart accepted a corrupt kernel:\n{}",
        o.output
    );
    expect(&o, "fault_message");
}
