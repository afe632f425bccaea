//! Integration tests on a KVM host: one test binary, so the nested KVM host (where one
//! is needed) boots once for all of them. Add a scenario module under `kvm/` and list it
//! here (see tests/README.md).

mod kvm {
    pub mod boot;
    pub mod common;
    pub mod devices;
    pub mod guest_task;
    pub mod harness;
    pub mod jailer;
    pub mod task_e2e;
}
