//! The virtio-mmio transport and the interface devices implement behind it.

pub mod device;
pub mod mmio;

pub use device::{register_events, ActivateContext, ActivateError, Interrupt, VirtioDevice};
pub use mmio::{MmioTransport, MMIO_WINDOW_SIZE, QUEUE_NOTIFY_OFFSET};

#[cfg(test)]
mod tests;
