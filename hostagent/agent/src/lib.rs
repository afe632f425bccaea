//! The host agent library: the image pipeline (`image`: OCI image pull, digest-verified
//! layer cache, unpack, the ext4 block devices a task's microVM gets) and the daemon's
//! control-plane side (`host`: flags, host identity, task registry, the `TaskRuntime`
//! seam, the agent channel with heartbeats and reconnect).
//! `vm` is the microVM runtime behind the `TaskRuntime` seam (netd ENIs, devices,
//! jailer + vmm, the guest init over vsock).

pub mod host;
pub mod image;
pub mod vm;
