//! The devices the vmm core emulates itself (not virtio): the COM1 UART, the i8042 keyboard
//! controller and the boot timer. `device_manager` places them on the buses.

pub mod boot_timer;
pub mod i8042;
pub mod serial;
