//! Versioned, length-delimited protocol between the host and the guest init over vsock.
//!
//! Module map (each module uses only those below it, and the constants of this file):
//! - [`host`]: the host's end: [`host::HostListener`] (bind, accept one guest, handshake) and
//!   [`host::GuestConnection`] (send the task and the stop, receive the reports).
//! - [`frame`]: frames on a byte stream: [`Channel`] (one message per frame, handshake,
//!   resumes across read timeouts), [`FrameDecoder`] (incremental, bounded; for callers
//!   with their own I/O), [`frame::decode_message`], [`ProtoError`].
//! - [`messages`]: what a frame carries: [`Hello`], [`HostMessage`], [`GuestMessage`], and
//!   the [`Message`] trait (the `type` tags each knows).
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
//! anything is allocated, and a payload buffer then grows only with the bytes that arrive;
//! a stream that ends inside a frame is [`ProtoError::TruncatedFrame`], one that ends
//! between frames is [`ProtoError::Closed`]. A payload that is not UTF-8 is
//! [`ProtoError::InvalidUtf8`], one whose `type` the receiver does not know is
//! [`ProtoError::UnknownType`], any other JSON the receiver refuses is
//! [`ProtoError::Malformed`] (error texts quote at most 200 characters of the peer's).
//!
//! # Timeouts and errors (against a hostile peer)
//!
//! A [`Channel`] (and the host's [`host::GuestConnection`]) keeps a partly received frame
//! across read timeouts: a receive that times out mid-frame returns the timeout
//! ([`ProtoError::is_timeout`]) and the next receive resumes exactly where it stopped, so
//! callers may poll with a short timeout. Every other receive error ends the channel: it is
//! never read again (later receives: [`ProtoError::Poisoned`], or [`ProtoError::Closed`]
//! after a clean end), and the host's connection also shuts its socket down, so the guest
//! is hung up on. There is no resynchronising inside a byte stream.
//!
//! # Fuzzing
//!
//! `tests/fuzz.rs` feeds random and mutated streams through [`FrameDecoder`] and through a
//! real socket into [`host::GuestConnection`] (no panic, a message or a typed error for
//! each, both paths agree, buffers within `HEADER_LEN + MAX_FRAME_LEN`). `cargo test` runs
//! 20,000 cases from a fixed seed; run longer with
//! `GUEST_PROTO_FUZZ_CASES=1000000 cargo test -p guest-proto --test fuzz`
//! (`GUEST_PROTO_FUZZ_SEED=<u64>` for another seed).
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
    Message,
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
