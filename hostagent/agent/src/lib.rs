//! The host agent library. Today it holds the image pipeline (`image`): OCI image pull,
//! digest-verified layer cache, unpack, and the ext4 block devices a task's microVM gets.
//! Registration, netd/jailer/vmm launch and the guest protocol will join as further modules.

pub mod image;
