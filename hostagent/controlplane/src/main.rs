//! The thin bundled control plane: ECS-compatible API, cells, placement, agent channel.

fn main() {}
