//! SIGTERM, SIGINT and SIGHUP end the vmm cleanly (metrics flushed, API socket removed,
//! terminal restored) through a signalfd watched by the event loop.

use crate::vstate::exit::ExitNotifier;
use event_manager::{EventOps, Events, MutEventSubscriber};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use vmm_sys_util::epoll::EventSet;

const SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Watches the termination signals.
pub struct SignalWatch {
    fd: File,
    exit: ExitNotifier,
}

impl SignalWatch {
    /// Blocks the signals in this thread (and the threads it spawns later) and opens a
    /// signalfd for them. Call before starting any thread.
    pub fn new(exit: ExitNotifier) -> std::io::Result<Self> {
        // SAFETY: sigset_t is plain data initialised by sigemptyset before use; the calls
        // only change this thread's signal mask and create a new fd that we own.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in SIGNALS {
                libc::sigaddset(&mut set, s);
            }
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(SignalWatch {
                fd: File::from_raw_fd(fd),
                exit,
            })
        }
    }
}

impl MutEventSubscriber for SignalWatch {
    fn process(&mut self, _e: Events, _ops: &mut EventOps) {
        // struct signalfd_siginfo is 128 bytes; the signal number is its first u32.
        let mut buf = [0u8; 128];
        if let Ok(128) = self.fd.read(&mut buf) {
            let signo = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
            tracing::info!("signal {signo} received: shutting down");
            self.exit.notify(0);
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.fd.as_raw_fd(), EventSet::IN)) {
            tracing::error!("cannot watch the signalfd: {e:?}");
        }
    }
}
