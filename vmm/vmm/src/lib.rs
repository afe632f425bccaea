//! The microVM monitor: KVM VM, vCPUs, Linux boot, legacy devices and the Firecracker API.
//!
//! Module map, from the process entry down; a module uses only modules listed below it,
//! except that vCPU threads (`vstate::vcpu`) dispatch their exits to `device_manager::bus`.
//! - [`run`]: the process: flags, logger, metrics, API or config file, the event loop.
//! - [`cli`]: command-line flags.
//! - [`signals`]: SIGTERM/SIGINT/SIGHUP as exit requests.
//! - [`api`]: HTTP server on the API thread (`http`), routes to [`api::routes::ApiRequest`]
//!   (`routes`), `execute` on the event loop; the only place errors become HTTP 400s.
//! - [`controller`]: the state machine (configured -> running) behind every request;
//!   [`controller::ControllerError`].
//! - [`virtio`]: the virtio devices of `vmm-devices` (block, net, vsock, entropy): created on
//!   `PUT`, attached at InstanceStart, updated on `PATCH`; [`virtio::VirtioError`].
//! - [`builder`]: assembles and starts the VM (memory, KVM VM, devices, boot, vCPU threads).
//! - [`boot`]: Linux loading (ELF/bzImage, initrd), zero page, MP table.
//! - [`device_manager`]: the port-I/O and MMIO buses, legacy device placement and
//!   virtio-mmio slots (irqfd, ioeventfds, command line).
//! - [`legacy`]: the devices the vmm emulates itself: serial, i8042, boot timer.
//! - [`vstate`]: KVM VM, vCPUs and their threads, CPUID, registers, MSRs, memory layout,
//!   exit requests.
//! - [`config`]: Firecracker's API bodies and config file as typed structs, with their
//!   validation errors.
//! - [`seccomp`]: the per-thread filters (`api`, `vmm`, `vcpu`).
//! - [`logger`], [`metrics`]: logs through tracing, metrics as JSON lines.
//! - [`output_limit`]: byte budgets for the guest console and the log.
//! - [`sync`]: the poison-tolerant `lock`.
//! - [`unsupported`]: [`unsupported::NotSupported`], the one "not supported by this vmm"
//!   error every unserved Firecracker endpoint, value or config-file section is refused with.
//!
//! `vmm/README.md` (beside this crate and `vmm-devices`) follows a request from the API
//! socket to the devices, names the threads and their seccomp filters.

pub mod api;
pub mod boot;
pub mod builder;
pub mod cli;
pub mod config;
pub mod controller;
pub mod device_manager;
pub mod legacy;
pub mod logger;
pub mod metrics;
pub mod output_limit;
pub mod run;
pub mod seccomp;
pub mod signals;
pub mod sync;
pub mod unsupported;
pub mod virtio;
pub mod vstate;
