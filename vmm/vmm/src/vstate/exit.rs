//! How vCPUs and devices ask the vmm to exit, and the log-once record of unhandled exits.

use crate::sync::lock;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::EventFd;

/// Requests the vmm to exit with a code; the event loop watches [`ExitNotifier::event`].
#[derive(Clone)]
pub struct ExitNotifier {
    evt: Arc<EventFd>,
    code: Arc<AtomicI32>,
    requested: Arc<AtomicBool>,
}

impl ExitNotifier {
    /// A notifier with a fresh non-blocking eventfd.
    pub fn new() -> std::io::Result<Self> {
        Ok(ExitNotifier {
            evt: Arc::new(EventFd::new(libc::EFD_NONBLOCK)?),
            code: Arc::new(AtomicI32::new(0)),
            requested: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Asks for exit with `code`; the first request wins.
    pub fn notify(&self, code: i32) {
        if !self.requested.swap(true, Ordering::SeqCst) {
            self.code.store(code, Ordering::SeqCst);
        }
        if let Err(e) = self.evt.write(1) {
            tracing::error!("cannot signal vmm exit: {e}");
        }
    }

    /// Whether an exit was requested.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// The requested exit code.
    pub fn code(&self) -> i32 {
        self.code.load(Ordering::SeqCst)
    }

    /// The eventfd the event loop polls.
    pub fn event(&self) -> &EventFd {
        &self.evt
    }
}

const MAX_LOGGED: usize = 256;

/// Remembers which unhandled exits were logged, so each is logged once.
#[derive(Default)]
pub struct UnhandledLog {
    seen: Mutex<HashSet<(String, u64)>>,
}

impl UnhandledLog {
    /// Logs an unhandled `kind` access at `addr` the first time it is seen; returns whether
    /// it was logged now.
    pub fn once(&self, kind: &str, addr: u64, len: usize) -> bool {
        crate::metrics::METRICS
            .vcpu_exits_unhandled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut seen = lock(&self.seen);
        if seen.len() >= MAX_LOGGED || !seen.insert((kind.to_string(), addr)) {
            return false;
        }
        tracing::info!("unhandled vCPU exit: {kind} at {addr:#x} ({len} bytes), ignored");
        if seen.len() == MAX_LOGGED {
            tracing::info!("{MAX_LOGGED} distinct unhandled exits logged; logging no more");
        }
        true
    }

    /// Whether an unhandled `kind` access at `addr` was seen (and logged).
    pub fn seen(&self, kind: &str, addr: u64) -> bool {
        let seen = lock(&self.seen);
        seen.contains(&(kind.to_string(), addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_code_wins_and_event_fires() {
        let n = ExitNotifier::new().unwrap();
        assert!(!n.requested());
        n.notify(3);
        n.clone().notify(0);
        assert!(n.requested());
        assert_eq!(n.code(), 3);
        assert_eq!(n.event().read().unwrap(), 2);
    }

    #[test]
    fn unhandled_logged_once() {
        let l = UnhandledLog::default();
        assert!(l.once("port write", 0x80, 1));
        assert!(!l.once("port write", 0x80, 1));
        assert!(l.once("port read", 0x80, 1));
        assert!(l.seen("port write", 0x80) && !l.seen("mmio write", 0x80));
    }
}
