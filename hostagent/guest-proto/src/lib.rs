//! Versioned, length-delimited protocol between the host and the guest init over vsock.
//!
//! Wire format: every message is one frame, a big-endian `u32` payload length followed by
//! that many bytes of JSON (serde). Frames larger than [`MAX_FRAME_LEN`] are refused before
//! anything is allocated. The first frame each way is a [`Hello`] carrying
//! [`PROTOCOL_VERSION`]; a peer with another version is refused with [`ProtoError::BadVersion`].
//!
//! Direction: the guest connects to the host (vsock CID 2, port [`CONTROL_PORT`]); with a
//! Firecracker-style vsock device the host agent listens on the Unix socket
//! `<uds_path>_<port>` before starting the VM (see [`host::HostListener`]).

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
