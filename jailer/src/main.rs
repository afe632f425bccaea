//! Starts one vmm process confined: chroot, namespaces, cgroups, rlimits, uid drop.

fn main() {}
