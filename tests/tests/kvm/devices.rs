//! Issue 3: the vmm's virtio devices with a real Linux guest (kernel-config kernel), booted
//! from a Firecracker config file with an API socket: an ext4 root drive read-write, a
//! read-only data drive whose backing file is swapped with `PATCH /drives`, a tap, vsock
//! both ways and entropy. The scenario is `tests/scenarios/vmm-devices/host-script` (host
//! side) and `devices-init` beside it (the guest's /init, on the payload's devices/rootfs.ext4).

use super::common::{expect, harness, require, require_kernel_config_kernel, run};
use std::fs;

#[test]
fn a_linux_guest_uses_block_net_vsock_and_entropy_devices() {
    require!("linux-boot", "devices");
    require_kernel_config_kernel("virtio-mmio devices");
    let token = fs::read_to_string(harness().local_payload().join("devices/host-token"))
        .expect("the payload has devices/host-token");
    let o = run("sh \"$PAYLOAD/scenarios/vmm-devices/host-script\"", 300);
    // Block: root drive mounted rw, the host's data read, the guest's data on the image.
    expect(&o, "root=/dev/vda rw");
    expect(&o, "wire: root /dev/root ext4 rw");
    expect(&o, &format!("wire: host data {}", token.trim()));
    expect(&o, "wire-host: guest data on disk: found");
    // PATCH /drives/{id} on a running VM: the guest reads the new backing file.
    expect(&o, "wire: vdb data-a");
    expect(&o, "wire-host: PATCH /drives/data 204");
    expect(&o, "wire: vdb data-b after swap");
    // Entropy, net (tap, MAC, ping the host), vsock both directions.
    expect(&o, "wire: hwrng virtio_rng.0 64 bytes");
    expect(&o, "wire: eth0 mac 06:00:ac:10:00:02");
    expect(&o, "wire: ping ok");
    expect(&o, "vsock_echo: reply hello-from-guest");
    expect(&o, "vsock_echo: echoed hello-from-host");
    expect(&o, "wire-host: host reply: OK ");
    expect(&o, "hello-from-host|");
    expect(&o, "wire-host: vmm exit 0");
}
