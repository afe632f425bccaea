//! The microVM monitor: KVM VM, vCPUs, Linux boot, legacy devices and the Firecracker API.

fn main() {}
