//! Host side of the channel, for the host agent.
//!
//! The guest init connects to the host (vsock CID 2, port [`crate::CONTROL_PORT`]). With a
//! Firecracker-style vsock device (`PUT /vsock` with `uds_path`), a guest-initiated
//! connection to port P arrives on the Unix socket `<uds_path>_P`, so the host agent binds
//! [`HostListener`] there BEFORE `InstanceStart`, then accepts the guest's connection.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::frame::{Channel, ProtoError};
use crate::messages::{GuestMessage, Hello, HostMessage, Role};
use crate::spec::TaskSpec;

/// Path of the Unix socket on which guest-initiated connections to `port` arrive.
pub fn guest_initiated_socket_path(uds_path: &Path, port: u32) -> PathBuf {
    let mut s = uds_path.as_os_str().to_owned();
    s.push(format!("_{port}"));
    PathBuf::from(s)
}

/// Listens for the guest init's connection. The socket file is removed on drop.
pub struct HostListener {
    listener: UnixListener,
    path: PathBuf,
}

impl HostListener {
    /// Binds `<uds_path>_<port>` (a stale socket file there is replaced).
    pub fn bind(uds_path: &Path, port: u32) -> io::Result<Self> {
        Self::bind_path(&guest_initiated_socket_path(uds_path, port))
    }

    /// Binds exactly `path`.
    pub fn bind_path(path: &Path) -> io::Result<Self> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to `timeout` for the guest to connect, then does the handshake.
    pub fn accept(&self, timeout: Duration) -> Result<GuestConnection, ProtoError> {
        let deadline = Instant::now() + timeout;
        self.listener.set_nonblocking(true)?;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "guest did not connect in time",
                        )
                        .into());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e.into()),
            }
        };
        stream.set_nonblocking(false)?;
        // The handshake itself must not hang on a silent peer.
        stream.set_read_timeout(Some(timeout.max(Duration::from_secs(1))))?;
        let conn = GuestConnection::handshake(stream)?;
        conn.chan.get_ref().set_read_timeout(None)?;
        Ok(conn)
    }
}

impl Drop for HostListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One guest's control connection, after a successful handshake.
///
/// Receiving follows [`Channel`]: a read timeout (see
/// [`GuestConnection::set_read_timeout`]) in the middle of a frame resumes on the next
/// [`GuestConnection::recv`]; any other error ends the connection: the socket is shut down
/// in both directions (the guest sees it closed, clones can no longer send) and later
/// receives fail without reading.
pub struct GuestConnection {
    chan: Channel<UnixStream>,
    /// The guest's [`Hello`].
    pub peer: Hello,
    /// False for a [`GuestConnection::try_clone`]: two readers would split frames.
    reads: bool,
}

impl GuestConnection {
    /// Does the host side of the handshake on an accepted stream.
    pub fn handshake(stream: UnixStream) -> Result<Self, ProtoError> {
        let mut chan = Channel::new(stream);
        let peer = chan.handshake(
            Role::Host,
            concat!("guest-proto-host/", env!("CARGO_PKG_VERSION")),
        )?;
        Ok(Self {
            chan,
            peer,
            reads: true,
        })
    }

    /// Sends the task to run (once, right after the handshake).
    pub fn run_task(&mut self, task: &TaskSpec) -> Result<(), ProtoError> {
        self.chan.send(&HostMessage::RunTask {
            task: Box::new(task.clone()),
        })
    }

    /// Asks the guest to stop the task.
    pub fn stop_task(&mut self, reason: &str, spot: bool) -> Result<(), ProtoError> {
        self.chan.send(&HostMessage::StopTask {
            reason: reason.to_string(),
            spot,
        })
    }

    /// Blocks for the next guest message; [`ProtoError::Closed`] once the guest hung up
    /// (after `TaskStopped` it powers off). A timeout keeps the connection (and any
    /// partial frame); every other error ends it (see the type's documentation).
    pub fn recv(&mut self) -> Result<GuestMessage, ProtoError> {
        if !self.reads {
            return Err(ProtoError::SendOnly);
        }
        let got = self.chan.recv();
        if let Err(e) = &got {
            if !e.is_timeout() {
                let _ = self.chan.get_ref().shutdown(std::net::Shutdown::Both);
            }
        }
        got
    }

    /// Memory held for a partially received frame (at most the 4-byte header plus
    /// [`crate::MAX_FRAME_LEN`], and only as much payload as has arrived).
    pub fn recv_buffer_allocated(&self) -> usize {
        self.chan.recv_buffer_allocated()
    }

    /// Bounds how long [`GuestConnection::recv`] blocks (`None`: forever).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.chan.get_ref().set_read_timeout(t)
    }

    /// A second handle for sending (e.g. `stop_task` from another thread while one thread
    /// sits in `recv`). Its own `recv` is [`ProtoError::SendOnly`].
    pub fn try_clone(&self) -> Result<GuestConnection, ProtoError> {
        Ok(GuestConnection {
            chan: Channel::new(self.chan.get_ref().try_clone()?),
            peer: self.peer.clone(),
            reads: false,
        })
    }
}
