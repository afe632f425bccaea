//! Issue 5: a Linux guest booted through jailer + vmm on the KVM host, with a drive and a
//! tap in a network namespace, the vmm confined (uid/gid, new PID namespace, cgroup v2
//! CPU and memory limits, chroot), then `jailer --cleanup`. The scenario is
//! `tests/scenarios/jailer/boot-in-jail` (in the payload's scenarios/), with the static
//! vmm and jailer of `scripts/build-static`.

use super::common::{expect, harness, require, require_kernel_config_kernel, run, BOOT_SECS};

#[test]
fn a_guest_boots_through_the_jailer_with_a_drive_and_a_tap_in_a_netns() {
    require!("linux-boot", "jailer");
    require_kernel_config_kernel("virtio-mmio block and net");
    let payload = harness().local_payload();
    assert!(
        payload.join("static/vmm").exists() && payload.join("static/jailer").exists(),
        "the payload lacks static/vmm or static/jailer: run scripts/build-static first"
    );
    let o = run(
        "sh \"$PAYLOAD/scenarios/jailer/boot-in-jail\"",
        BOOT_SECS + 60,
    );
    expect(&o, "guest-init: started as pid 1");
    // The drive and the tap reached the guest: the jailed vmm opened both.
    expect(&o, "guest-init: block devices vda");
    expect(&o, "guest-init: net eth0 06:00:ac:10:00:02");
    expect(&o, "guest-init: rebooting");
    expect(&o, "nested-boot: jailer exit status 0");
    expect(&o, "nested-boot: cleanup exit status 0");
    expect(&o, "nested-boot: PASS");
    assert_eq!(o.status, 0);
}
