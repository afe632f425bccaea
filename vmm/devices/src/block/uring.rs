//! The asynchronous block engine (`io_engine: "Async"`): requests go to an io_uring without
//! blocking the event loop; the kernel signals completions on an eventfd that the device
//! registers with the event loop, which then fills the used ring and notifies the guest.
//!
//! Bounds: at most `capacity` requests in flight per device (the queue size; a guest that
//! submits more waits until some complete). Each request in flight holds a clone of the
//! guest memory and of the backing file, so neither goes away under the kernel. A reset
//! (on a vCPU thread, where only the vCPU seccomp filter's syscalls are allowed) makes no
//! syscall: it bumps a generation number, and completions of an older generation are
//! reaped and dropped by the event loop without touching the used ring or status bytes.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use vm_memory::{GuestAddress, GuestMemoryBackend};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::request::{FileOp, Request, RequestType, PUNCH_HOLE_MODE};
use crate::GuestMemoryMmap;

/// A request in flight: what the completion needs, and what must outlive the kernel's use.
struct InFlight {
    generation: u64,
    head: u16,
    request: Request,
    // Read by the kernel until the completion; kept, never read here.
    _iovecs: Vec<libc::iovec>,
    _file: Arc<File>,
    _mem: GuestMemoryMmap,
}

// SAFETY: the raw iovec pointers point into `_mem`, which the slot keeps mapped; they are
// only handed to the kernel, never dereferenced here, so moving the slot between threads
// (the device moves from the API thread to the event loop) is sound.
unsafe impl Send for InFlight {}

/// A completion for the device to report to the guest.
pub struct Completion {
    /// Head of the chain to return.
    pub head: u16,
    /// The request.
    pub request: Request,
    /// The file operation's result: bytes or 0 on success, a negative errno on failure.
    pub result: i32,
}

/// Why a request was not submitted.
#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// `capacity` requests are in flight; retry after a completion.
    Full,
    /// The request's buffers could not be mapped (the caller answers IOERR).
    BadBuffers,
}

/// An io_uring with its completion eventfd and its slots.
pub struct Uring {
    ring: IoUring,
    evt: EventFd,
    slots: Vec<Option<InFlight>>,
    free: Vec<usize>,
    generation: u64,
}

impl Uring {
    /// Sets up a ring for `capacity` requests in flight and registers its eventfd. This is
    /// the probe: it fails where io_uring is unavailable (old kernel, sysctl
    /// `kernel.io_uring_disabled`, a container's seccomp profile).
    pub fn new(capacity: u16) -> std::io::Result<Self> {
        let entries = u32::from(capacity.max(1)).next_power_of_two();
        // The completion queue is twice the submission queue (the kernel's default), and
        // no more than `capacity` requests are ever in flight: it cannot overflow.
        let ring = IoUring::new(entries)?;
        let evt = EventFd::new(EFD_NONBLOCK)?;
        ring.submitter().register_eventfd(evt.as_raw_fd())?;
        let capacity = usize::from(capacity.max(1));
        Ok(Uring {
            ring,
            evt,
            slots: (0..capacity).map(|_| None).collect(),
            free: (0..capacity).rev().collect(),
            generation: 0,
        })
    }

    /// The eventfd the kernel signals on completions.
    pub fn event(&self) -> &EventFd {
        &self.evt
    }

    /// Requests in flight (including those of a previous generation).
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether no more requests can be queued now.
    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    /// Queues `op` for `request` (chain `head`); [`Uring::submit`] hands the queue to the
    /// kernel.
    pub fn push(
        &mut self,
        head: u16,
        request: Request,
        op: FileOp,
        file: &Arc<File>,
        mem: &GuestMemoryMmap,
    ) -> Result<(), SubmitError> {
        let Some(&slot) = self.free.last() else {
            return Err(SubmitError::Full);
        };
        let iovecs = match op {
            FileOp::Transfer { .. } => iovecs(&request, mem).ok_or(SubmitError::BadBuffers)?,
            _ => Vec::new(),
        };
        let fd = types::Fd(file.as_raw_fd());
        let entry = match op {
            FileOp::Transfer { offset } => {
                let n = u32::try_from(iovecs.len()).map_err(|_| SubmitError::BadBuffers)?;
                if request.kind == RequestType::In {
                    opcode::Readv::new(fd, iovecs.as_ptr(), n)
                        .offset(offset)
                        .build()
                } else {
                    opcode::Writev::new(fd, iovecs.as_ptr(), n)
                        .offset(offset)
                        .build()
                }
            }
            FileOp::Flush => opcode::Fsync::new(fd).build(),
            FileOp::Discard { offset, len } => opcode::Fallocate::new(fd, len)
                .offset(offset)
                .mode(PUNCH_HOLE_MODE)
                .build(),
        };
        let entry: squeue::Entry = entry.user_data(slot as u64);
        if self.ring.submission().is_full() {
            self.submit();
        }
        // SAFETY: the entry's iovecs, the buffers they point to (in `mem`) and the file stay
        // alive in the slot until the completion with this slot's user data is reaped.
        if unsafe { self.ring.submission().push(&entry) }.is_err() {
            return Err(SubmitError::Full);
        }
        self.free.pop();
        self.slots[slot] = Some(InFlight {
            generation: self.generation,
            head,
            request,
            _iovecs: iovecs,
            _file: file.clone(),
            _mem: mem.clone(),
        });
        Ok(())
    }

    /// Hands queued requests to the kernel without waiting (io_uring_enter). A failure is
    /// logged; the entries stay queued and go with the next submit.
    pub fn submit(&mut self) {
        if self.ring.submission().is_empty() {
            return;
        }
        if let Err(e) = self.ring.submit() {
            if e.raw_os_error() != Some(libc::EBUSY) && e.raw_os_error() != Some(libc::EAGAIN) {
                tracing::warn!("virtio-block: io_uring submit failed: {e}");
            }
        }
    }

    /// Clears the eventfd and takes every completion, dropping those of requests queued
    /// before the last [`Uring::reset`].
    pub fn reap(&mut self) -> Vec<Completion> {
        let _ = self.evt.read();
        let mut done = Vec::new();
        let cq: Vec<cqueue::Entry> = self.ring.completion().collect();
        for cqe in cq {
            let slot = cqe.user_data() as usize;
            let Some(f) = self.slots.get_mut(slot).and_then(Option::take) else {
                continue;
            };
            self.free.push(slot);
            if f.generation == self.generation {
                done.push(Completion {
                    head: f.head,
                    request: f.request,
                    result: cqe.result(),
                });
            }
        }
        done
    }

    /// Forgets the requests in flight (device reset): their completions will be dropped.
    /// Makes no syscall (it runs on a vCPU thread).
    pub fn reset(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        // The kernel may still write into guest memory for requests in flight; wait for
        // them before the slots (and so the memory mappings) go.
        let mut tries = 0;
        while self.in_flight() > 0 && tries < 1000 {
            tries += 1;
            if self.ring.submit_and_wait(1).is_err() {
                break;
            }
            self.generation = self.generation.wrapping_add(1);
            self.reap();
        }
    }
}

/// Host iovecs of the request's data buffers (a buffer that spans two memory regions
/// becomes two iovecs). None when a buffer is not in guest memory (parse already checked).
fn iovecs(request: &Request, mem: &GuestMemoryMmap) -> Option<Vec<libc::iovec>> {
    let mut v = Vec::with_capacity(request.data.len());
    for &(addr, len) in &request.data {
        for s in mem.get_slices(GuestAddress(addr.0), len as usize) {
            let s = s.ok()?;
            v.push(libc::iovec {
                iov_base: s.ptr_guard_mut().as_ptr().cast(),
                iov_len: s.len(),
            });
        }
    }
    Some(v)
}
