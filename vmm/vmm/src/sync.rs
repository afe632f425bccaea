//! The one poison-tolerant lock of the vmm.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, also when a thread panicked while holding it: the vmm keeps serving the
/// guest and the API with the state as the panicking thread left it.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
