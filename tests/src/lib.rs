//! Integration tests that need a KVM host, and the nested KVM host harness.
//!
//! A test describes a *scenario*: a shell script that runs on a KVM host with the test
//! payload at `$PAYLOAD` (release binaries in `$PAYLOAD/bin`, guest kernels, initramfs
//! and disk images in `$PAYLOAD/guest`) and a fresh scratch directory as its working
//! directory (`$SCRATCH`). [`run`] runs it and returns its exit status and output:
//!
//! - where `/dev/kvm` has hardware virtualization (VT-x/SVM), directly on this machine;
//! - elsewhere (PVM machines, no `/dev/kvm`), inside a nested KVM host: QEMU TCG with
//!   emulated SVM, booted once per test binary and shared by all its tests (see
//!   `tests/nested/` and `tests/README.md`).

pub mod bench;
pub mod environment;
pub mod harness;
pub mod nested;
pub mod payload;
pub mod vm;

pub use environment::Environment;
pub use harness::{harness, run, Harness, Outcome};
pub use vm::VmConfig;
