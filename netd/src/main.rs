//! Host network daemon: per-task ENIs, IPAM, security groups (nftables), NAT.

fn main() {}
