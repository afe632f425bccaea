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

//!
//! Modules, lowest first (each uses only those above it):
//! - [`bench`]: figures of the benchmarks in `benches/` (median, min, max).
//! - [`outcome`]: [`Outcome`], what a scenario did.
//! - [`payload`]: repository and target paths, the payload (`tests/nested/payload`) and
//!   its ext4 disk image.
//! - [`environment`]: direct or nested, as `scripts/kvm-kind` says.
//! - [`direct`]: scenarios on this machine.
//! - [`nested`]: the nested KVM host (QEMU) and its command channels.
//! - [`harness`]: the per-test-binary [`Harness`] over `direct` or `nested`.
//! - [`vm`]: [`VmConfig`], microVM configurations and the shell snippets that run them.
//!
//! The scenarios' scripts are in `tests/scenarios/<component>/`; the payload carries them
//! at `$PAYLOAD/scenarios/<component>/` (see `tests/README.md`).

pub mod bench;
pub mod direct;
pub mod environment;
pub mod harness;
pub mod nested;
pub mod outcome;
pub mod payload;
pub mod vm;

pub use environment::Environment;
pub use harness::{harness, run, Harness};
pub use outcome::Outcome;
pub use vm::VmConfig;
