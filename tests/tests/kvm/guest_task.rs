//! Issue 8: a task microVM end to end. The vmm boots the kernel-config kernel with the
//! static guest-init as its initramfs; the host side (`guest-host`, guest-proto over the
//! vmm's vsock) sends a task of three busybox containers on read-only ext4 drives with a
//! shared volume drive, and gets back their state changes, logs per stream, health and
//! exit codes. The scenario and its checks are `tests/scenarios/guest-init/vm-task`.

use super::common::{expect, harness, require, require_kernel_config_kernel, run};

#[test]
fn a_task_of_three_containers_runs_in_a_microvm() {
    require!("linux-boot", "guest-task");
    require_kernel_config_kernel("virtio-mmio block and vsock");
    let payload = harness().local_payload();
    assert!(
        payload.join("guest/guest-init.cpio.gz").exists()
            && payload.join("bin/guest-host").exists(),
        "the payload lacks guest/guest-init.cpio.gz or bin/guest-host: build the static \
         guest-init and guest-host first (run-tests does, see tests/README.md)"
    );
    let o = run("sh \"$PAYLOAD/scenarios/guest-init/vm-task\"", 300);
    // The script checks the events itself and prints PASS only if all hold; the lines
    // below are the ones a reader of a failure wants named.
    expect(&o, r#""type":"taskAccepted""#);
    expect(&o, r#""container":"writer","stream":"stdout""#);
    expect(
        &o,
        r#""container":"client","stream":"stdout","timestampMs""#,
    );
    expect(&o, "guest boot marker: ");
    expect(&o, "vm-task: PASS");
    assert_eq!(o.status, 0, "vm-task exit status");
}
