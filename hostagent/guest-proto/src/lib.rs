//! Versioned, length-delimited protocol between the host and the guest init over vsock.
//!
//! Module map (each module uses only those below it, and the constants of this file):
//! - [`host`]: the host's end: [`host::HostListener`] (bind, accept one guest, handshake) and
//!   [`host::GuestConnection`] (send the task and the stop, receive the reports).
//! - [`frame`]: frames on a byte stream: [`Channel`] (one message per frame, handshake),
//!   [`FrameDecoder`] for callers with their own I/O, [`ProtoError`].
//! - [`messages`]: what a frame carries: [`Hello`], [`HostMessage`], [`GuestMessage`].
//! - [`validate`]: [`validate_task`], the rules a spec passes before anything starts, and the
//!   parsers the guest reuses (CIDR, MAC, hex).
//! - [`spec`]: [`TaskSpec`], the task as the guest runs it (interfaces, DNS, storage,
//!   volumes, containers).
//!
//! # The connection
//!
//! The guest connects to the host (vsock CID [`HOST_CID`], port [`CONTROL_PORT`]); with a
//! Firecracker-style vsock device the host agent listens on the Unix socket
//! `<uds_path>_<port>` before starting the VM (see [`host::HostListener`]). One connection
//! carries one task, from the handshake to the guest's last report.
//!
//! # Frames
//!
//! Every message is one frame: a big-endian `u32` payload length, then that many bytes of
//! JSON (serde). Empty frames and frames larger than [`MAX_FRAME_LEN`] are refused before
//! anything is allocated; a stream that ends inside a frame is
//! [`ProtoError::TruncatedFrame`], one that ends between frames is [`ProtoError::Closed`].
//!
//! # Who sends what
//!
//! 1. Both sides, first: a [`Hello`] with [`PROTOCOL_MAGIC`], [`PROTOCOL_VERSION`] and their
//!    role. Another magic, version or role ends the session ([`ProtoError::BadMagic`],
//!    [`ProtoError::BadVersion`], [`ProtoError::BadRole`]); the guest reports a fatal
//!    `error` first.
//! 2. Host -> guest, [`HostMessage`] (JSON tag `type`): `runTask {task}` once, right after
//!    the handshake; later, at any time, `stopTask {reason, spot}`.
//! 3. Guest -> host, [`GuestMessage`]: `taskAccepted` once the spec is valid (else a fatal
//!    `error` and `taskStopped`); then, while the task runs, `containerStateChange`,
//!    `healthChange`, `log` (one line of a container's output) and non-fatal `error`;
//!    last, `taskStopped {reason, containers}` with every container's final state. The guest
//!    then resets the VM and the connection closes.

pub mod frame;
pub mod host;
pub mod messages;
pub mod spec;
pub mod validate;

pub use frame::{Channel, FrameDecoder, ProtoError, MAX_FRAME_LEN};
pub use messages::{
    ContainerState, ContainerStatus, GuestMessage, HealthStatus, Hello, HostMessage, LogStream,
};
pub use spec::*;
pub use validate::{validate_task, SpecError};

/// Version of this protocol; both sides must speak exactly this version.
pub const PROTOCOL_VERSION: u32 = 1;
/// Magic string in every [`Hello`], so a stray connection is told apart from a peer.
pub const PROTOCOL_MAGIC: &str = "fargate-guest-proto";
/// vsock port the guest init connects to on the host (CID 2).
pub const CONTROL_PORT: u32 = 1024;
/// The host's vsock CID.
pub const HOST_CID: u32 = 2;
