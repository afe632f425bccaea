//! One task session on an established connection: handshake, receive and validate the
//! task, set the guest up for it, run it, report the end.

use std::fs::File;
use std::sync::mpsc;

use guest_proto::messages::Role;
use guest_proto::{validate_task, Channel, GuestMessage, HostMessage, ProtoError, TaskSpec};

use crate::runtime::supervisor::Supervisor;
use crate::runtime::{Event, RuntimeConfig};

const AGENT: &str = concat!("guest-init/", env!("CARGO_PKG_VERSION"));
/// Messages buffered toward the host before container output blocks (back-pressure).
const OUT_QUEUE: usize = 4096;

/// Hooks the caller provides: the VM's boot steps, the boot marker.
pub trait Host {
    /// Why [`Host::prepare`] failed; its text goes to the host after "setting up the guest: ".
    type Error: std::fmt::Display;
    /// Applies the task's guest-wide settings (network, hostname, storage...).
    fn prepare(&mut self, task: &TaskSpec, cfg: &mut RuntimeConfig) -> Result<(), Self::Error>;
    /// Called once when the first container process has started.
    fn first_container_started(&mut self) -> Box<dyn FnOnce()>;
}

/// How the session ended.
#[derive(Debug)]
pub enum Outcome {
    /// The task ran and stopped.
    Stopped(String),
    /// No task could be run (channel or spec problem); already reported when possible.
    Failed(String),
}

fn fail(ch: &mut Channel<File>, msg: String) -> Outcome {
    let _ = ch.send(&GuestMessage::Error {
        message: msg.clone(),
        fatal: true,
    });
    let _ = ch.send(&GuestMessage::TaskStopped {
        reason: msg.clone(),
        containers: vec![],
    });
    Outcome::Failed(msg)
}

/// Runs one task over `conn`.
pub fn run<H: Host>(conn: File, mut cfg: RuntimeConfig, host: &mut H) -> Outcome {
    let mut ch = Channel::new(conn);
    if let Err(e) = ch.handshake(Role::Guest, AGENT) {
        if matches!(
            e,
            ProtoError::BadVersion { .. } | ProtoError::BadMagic(_) | ProtoError::BadRole { .. }
        ) {
            let _ = ch.send(&GuestMessage::Error {
                message: e.to_string(),
                fatal: true,
            });
        }
        return Outcome::Failed(format!("handshake: {e}"));
    }
    let task = match ch.recv::<HostMessage>() {
        Ok(HostMessage::RunTask { task }) => *task,
        Ok(HostMessage::StopTask { reason, .. }) => {
            let _ = ch.send(&GuestMessage::TaskStopped {
                reason: reason.clone(),
                containers: vec![],
            });
            return Outcome::Stopped(reason);
        }
        Err(e) => return fail(&mut ch, format!("receiving the task: {e}")),
    };
    if let Err(e) = validate_task(&task) {
        return fail(&mut ch, e.to_string());
    }
    if let Err(e) = ch.send(&GuestMessage::TaskAccepted {
        task_arn: task.task_arn.clone(),
    }) {
        return Outcome::Failed(format!("control channel: {e}"));
    }
    if let Err(e) = host.prepare(&task, &mut cfg) {
        return fail(&mut ch, format!("setting up the guest: {e}"));
    }
    let stream = ch.into_inner();
    let (read_half, write_half) = match (stream.try_clone(), stream.try_clone()) {
        (Ok(r), Ok(w)) => (r, w),
        (Err(e), _) | (_, Err(e)) => {
            return Outcome::Failed(format!("duplicating the control socket: {e}"))
        }
    };
    let (out_tx, out_rx) = mpsc::sync_channel::<GuestMessage>(OUT_QUEUE);
    let writer = std::thread::spawn(move || {
        let mut ch = Channel::new(write_half);
        for m in out_rx {
            if ch.send(&m).is_err() {
                // Host gone: keep draining so producers never block.
                continue;
            }
        }
    });
    let (ev_tx, ev_rx) = mpsc::channel::<Event>();
    let reader_tx = ev_tx.clone();
    std::thread::spawn(move || {
        let mut ch = Channel::new(read_half);
        loop {
            match ch.recv::<HostMessage>() {
                Ok(m) => {
                    if reader_tx.send(Event::Host(m)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = reader_tx.send(Event::HostGone(e.to_string()));
                    return;
                }
            }
        }
    });
    let mut sup = Supervisor::new(cfg, task, out_tx.clone(), ev_tx, ev_rx);
    sup.on_first_start(host.first_container_started());
    let (reason, containers) = sup.run();
    let _ = out_tx.send(GuestMessage::TaskStopped {
        reason: reason.clone(),
        containers,
    });
    drop(out_tx);
    let _ = writer.join();
    // Unblock the reader thread; the host sees EOF after TaskStopped.
    // SAFETY: shutdown on a socket fd we own.
    unsafe { libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(&stream), libc::SHUT_RDWR) };
    Outcome::Stopped(reason)
}
