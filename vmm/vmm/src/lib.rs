//! The microVM monitor: KVM VM, vCPUs, Linux boot, legacy devices and the Firecracker API.
//!
//! Module map: [`cli`] flags; [`run`] process and event loop; [`api`] HTTP server and routes;
//! [`config`] Firecracker JSON types; [`controller`] state machine; [`builder`] VM assembly;
//! [`vstate`] KVM VM, vCPUs, CPUID, registers, memory layout; [`boot`] Linux loading, zero
//! page, MP table; [`devices`] serial, i8042, boot timer, buses, virtio-mmio registration;
//! [`virtio`] the virtio devices (block, net, vsock, entropy) and their API;
//! [`seccomp`] per-thread filters; [`logger`], [`metrics`] and [`signals`].

pub mod api;
pub mod boot;
pub mod builder;
pub mod cli;
pub mod config;
pub mod controller;
pub mod devices;
pub mod logger;
pub mod metrics;
pub mod output_limit;
pub mod run;
pub mod seccomp;
pub mod signals;
pub mod virtio;
pub mod vstate;
