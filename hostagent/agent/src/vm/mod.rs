//! The microVM runtime: every task runs alone in a jailed microVM.
//!
//! | module | concept |
//! | --- | --- |
//! | `config` | flags-derived settings, task id, jail paths |
//! | `spec` | agent-proto task -> guest-proto task spec and vmm config file |
//! | `devices` | image roots, scratch and volume devices, kernel/initramfs in the jail |
//! | `eni` | netd ENIs |
//! | `jail` | jailer start (vmm pid), `jailer --cleanup` |
//! | `relay` | the per-task guest-channel relay process (survives agent restarts) |
//! | `guest` | the guest session: RunTask, containers RUNNING, messages -> events |
//! | `process` | pid + start time identity of host processes |
//! | `state` | the per-task state directory (atomic `state.json`) |
//! | `metrics` | cgroup CPU/memory utilization |
//! | `launch` | step order and release on failure (the [`launch::Steps`] seam) |
//! | `steps` | the real steps and the release |
//! | `runtime` | [`MicroVmRuntime`]: launch, supervise, stop, adopt |

pub mod config;
pub mod devices;
pub mod eni;
pub mod guest;
pub mod jail;
pub mod launch;
pub mod metrics;
pub mod process;
pub mod relay;
pub mod runtime;
pub mod spec;
pub mod state;
pub mod steps;

pub use config::VmRuntimeConfig;
pub use runtime::MicroVmRuntime;
