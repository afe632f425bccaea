//! u32 length-prefixed frames carrying JSON, with a sync channel and an I/O-free decoder.

use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Serialize};

use crate::messages::{Hello, Role};
use crate::{PROTOCOL_MAGIC, PROTOCOL_VERSION};

/// Largest payload accepted in one frame (1 MiB): a task spec or a log line fit easily.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Everything that can go wrong on the channel.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("I/O error on the control channel: {0}")]
    Io(#[from] io::Error),
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("empty frame")]
    EmptyFrame,
    #[error("connection closed in the middle of a frame")]
    TruncatedFrame,
    #[error("connection closed by the peer")]
    Closed,
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("peer is not speaking this protocol (magic {0:?})")]
    BadMagic(String),
    #[error("peer speaks protocol version {peer}, we speak {ours}")]
    BadVersion { peer: u32, ours: u32 },
    #[error("peer has role {peer:?}, expected {expected:?}")]
    BadRole { peer: Role, expected: Role },
}

impl ProtoError {
    /// Whether this is only a read timeout (socket read timeout or non-blocking socket
    /// with nothing to read): the connection is still usable.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ProtoError::Io(e)
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

/// Encodes one payload as a frame (length prefix + payload).
pub fn encode_frame(payload: &[u8]) -> Result<Vec<u8>, ProtoError> {
    check_len(payload.len())?;
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Serializes a message and encodes it as one frame.
pub fn encode_message<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtoError> {
    encode_frame(&serde_json::to_vec(msg)?)
}

fn check_len(len: usize) -> Result<(), ProtoError> {
    if len == 0 {
        return Err(ProtoError::EmptyFrame);
    }
    if len > MAX_FRAME_LEN {
        return Err(ProtoError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(())
}

/// Push-based decoder for callers with their own I/O (e.g. an async host agent): feed it
/// whatever bytes arrived, then take complete frames out.
#[derive(Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Takes the next complete frame's payload, if one is buffered. An oversize length
    /// prefix is an error as soon as the 4 length bytes are in.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, ProtoError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        check_len(len)?;
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let payload = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(payload))
    }

    /// Takes and deserializes the next complete message, if one is buffered.
    pub fn next_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ProtoError> {
        match self.next_frame()? {
            Some(p) => Ok(Some(serde_json::from_slice(&p)?)),
            None => Ok(None),
        }
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Reads one frame from a blocking reader. `Ok(None)` on a clean end of stream at a frame
/// boundary; short reads are retried until the frame is complete.
pub fn read_frame<R: Read>(r: &mut R) -> Result<Option<Vec<u8>>, ProtoError> {
    let mut len_buf = [0u8; 4];
    let got = read_full(r, &mut len_buf)?;
    if got == 0 {
        return Ok(None);
    }
    if got < 4 {
        return Err(ProtoError::TruncatedFrame);
    }
    let len = u32::from_be_bytes(len_buf) as usize;
    check_len(len)?;
    let mut payload = vec![0u8; len];
    if read_full(r, &mut payload)? < len {
        return Err(ProtoError::TruncatedFrame);
    }
    Ok(Some(payload))
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, ProtoError> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// Writes one frame.
pub fn write_frame<W: Write>(w: &mut W, payload: &[u8]) -> Result<(), ProtoError> {
    w.write_all(&encode_frame(payload)?)?;
    w.flush()?;
    Ok(())
}

/// A typed, blocking message channel over any byte stream.
pub struct Channel<S> {
    stream: S,
}

impl<S: Read + Write> Channel<S> {
    pub fn new(stream: S) -> Self {
        Self { stream }
    }

    pub fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), ProtoError> {
        self.stream.write_all(&encode_message(msg)?)?;
        self.stream.flush()?;
        Ok(())
    }

    /// Receives the next message; [`ProtoError::Closed`] on a clean end of stream.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T, ProtoError> {
        match read_frame(&mut self.stream)? {
            Some(p) => Ok(serde_json::from_slice(&p)?),
            None => Err(ProtoError::Closed),
        }
    }

    /// Exchanges [`Hello`]s: sends ours, reads the peer's, checks magic, version and role.
    pub fn handshake(&mut self, ours: Role, agent: &str) -> Result<Hello, ProtoError> {
        self.send(&Hello::new(ours, agent))?;
        let peer: Hello = self.recv()?;
        check_hello(&peer, ours.peer())?;
        Ok(peer)
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    pub fn into_inner(self) -> S {
        self.stream
    }
}

/// Checks a peer's [`Hello`].
pub fn check_hello(h: &Hello, expected: Role) -> Result<(), ProtoError> {
    if h.magic != PROTOCOL_MAGIC {
        return Err(ProtoError::BadMagic(h.magic.clone()));
    }
    if h.version != PROTOCOL_VERSION {
        return Err(ProtoError::BadVersion {
            peer: h.version,
            ours: PROTOCOL_VERSION,
        });
    }
    if h.role != expected {
        return Err(ProtoError::BadRole {
            peer: h.role,
            expected,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{GuestMessage, HostMessage, LogStream};

    #[test]
    fn only_read_timeouts_count_as_timeouts() {
        for kind in [io::ErrorKind::WouldBlock, io::ErrorKind::TimedOut] {
            assert!(ProtoError::Io(io::Error::from(kind)).is_timeout());
        }
        assert!(!ProtoError::Io(io::Error::from(io::ErrorKind::BrokenPipe)).is_timeout());
        assert!(!ProtoError::Closed.is_timeout());
    }

    /// A reader that hands out at most one byte per read, like a slow socket.
    struct Trickle(Vec<u8>, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.1 >= self.0.len() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[self.1];
            self.1 += 1;
            Ok(1)
        }
    }

    fn log_msg(line: &str) -> GuestMessage {
        GuestMessage::Log {
            container: "web".into(),
            stream: LogStream::Stderr,
            timestamp_ms: 7,
            line: line.into(),
        }
    }

    #[test]
    fn frame_round_trip_with_partial_reads() {
        let mut bytes = encode_message(&log_msg("hello")).unwrap();
        bytes.extend(encode_message(&log_msg("world")).unwrap());
        let mut r = Trickle(bytes, 0);
        let a: GuestMessage =
            serde_json::from_slice(&read_frame(&mut r).unwrap().unwrap()).unwrap();
        let b: GuestMessage =
            serde_json::from_slice(&read_frame(&mut r).unwrap().unwrap()).unwrap();
        assert_eq!(a, log_msg("hello"));
        assert_eq!(b, log_msg("world"));
        assert!(
            read_frame(&mut r).unwrap().is_none(),
            "clean EOF at a frame boundary"
        );
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let bytes = encode_message(&log_msg("hello")).unwrap();
        for cut in [2, 4, bytes.len() - 1] {
            let mut r = Trickle(bytes[..cut].to_vec(), 0);
            assert!(
                matches!(read_frame(&mut r), Err(ProtoError::TruncatedFrame)),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn oversize_frame_rejected_before_allocation() {
        let len = (MAX_FRAME_LEN as u32 + 1).to_be_bytes();
        let mut r = Trickle(len.to_vec(), 0);
        assert!(matches!(
            read_frame(&mut r),
            Err(ProtoError::FrameTooLarge { .. })
        ));
        let mut d = FrameDecoder::new();
        d.push(&u32::MAX.to_be_bytes());
        assert!(matches!(
            d.next_frame(),
            Err(ProtoError::FrameTooLarge { .. })
        ));
        assert!(matches!(
            encode_frame(&vec![b'x'; MAX_FRAME_LEN + 1]),
            Err(ProtoError::FrameTooLarge { .. })
        ));
        assert!(matches!(encode_frame(&[]), Err(ProtoError::EmptyFrame)));
        // exactly the maximum is fine
        assert_eq!(
            encode_frame(&vec![b'x'; MAX_FRAME_LEN]).unwrap().len(),
            MAX_FRAME_LEN + 4
        );
    }

    #[test]
    fn decoder_assembles_frames_byte_by_byte() {
        let msg = HostMessage::StopTask {
            reason: "user".into(),
            spot: true,
        };
        let bytes = encode_message(&msg).unwrap();
        let mut d = FrameDecoder::new();
        for (i, b) in bytes.iter().enumerate() {
            assert!(
                d.next_message::<HostMessage>().unwrap().is_none(),
                "complete too early at {i}"
            );
            d.push(&[*b]);
        }
        assert_eq!(d.next_message::<HostMessage>().unwrap(), Some(msg));
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn malformed_payload_is_an_error() {
        let mut d = FrameDecoder::new();
        d.push(&encode_frame(b"{\"type\":\"noSuchMessage\"}").unwrap());
        assert!(matches!(
            d.next_message::<HostMessage>(),
            Err(ProtoError::Malformed(_))
        ));
    }

    #[test]
    fn hello_checks_magic_version_and_role() {
        let mut h = Hello::new(Role::Guest, "t");
        assert!(check_hello(&h, Role::Guest).is_ok());
        assert!(matches!(
            check_hello(&h, Role::Host),
            Err(ProtoError::BadRole { .. })
        ));
        h.version = PROTOCOL_VERSION + 1;
        assert!(
            matches!(check_hello(&h, Role::Guest), Err(ProtoError::BadVersion { peer, .. }) if peer == PROTOCOL_VERSION + 1)
        );
        h.magic = "http".into();
        assert!(matches!(
            check_hello(&h, Role::Guest),
            Err(ProtoError::BadMagic(_))
        ));
    }
}
