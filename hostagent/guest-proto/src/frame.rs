//! u32 length-prefixed frames carrying JSON, with a sync channel and an I/O-free decoder.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::messages::{Hello, Message, Role};
use crate::{PROTOCOL_MAGIC, PROTOCOL_VERSION};

/// Largest payload accepted in one frame (1 MiB): a task spec or a log line fit easily.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Bytes of the length prefix in front of every payload.
pub const HEADER_LEN: usize = 4;
/// Most bytes one `read` asks the stream for (a stack buffer of this size per receive).
const READ_CHUNK: usize = 16 * 1024;
/// Payload bytes reserved when a frame's header arrives; the buffer then grows with the
/// bytes that really arrive, so a peer that declares 1 MiB and sends 10 bytes pins 4 KiB.
const INITIAL_PAYLOAD_CAPACITY: usize = 4 * 1024;
/// How much of a peer-chosen string (a `type` tag, a serde message) an error keeps.
const MAX_ERROR_DETAIL: usize = 200;

/// Everything that can go wrong on the channel.
///
/// Only a read timeout ([`ProtoError::is_timeout`]) leaves a [`Channel`] usable; every other
/// receive error ends it for good (see [`Channel::recv`]).
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
    #[error("frame payload is not UTF-8 (valid up to byte {valid_up_to})")]
    InvalidUtf8 { valid_up_to: usize },
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// The payload is UTF-8 but not a message of the expected shape (the detail is
    /// serde's, cut to a bounded length: it may quote the peer).
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("the channel failed earlier and is not read from (or written to) again")]
    Poisoned,
    #[error("this handle only sends: the connection is read through the original handle")]
    SendOnly,
    #[error("peer is not speaking this protocol (magic {0:?})")]
    BadMagic(String),
    #[error("peer speaks protocol version {peer}, we speak {ours}")]
    BadVersion { peer: u32, ours: u32 },
    #[error("peer has role {peer:?}, expected {expected:?}")]
    BadRole { peer: Role, expected: Role },
}

impl From<serde_json::Error> for ProtoError {
    fn from(e: serde_json::Error) -> Self {
        ProtoError::Malformed(bounded(&e.to_string()))
    }
}

/// At most [`MAX_ERROR_DETAIL`] characters of `s`.
fn bounded(s: &str) -> String {
    match s.char_indices().nth(MAX_ERROR_DETAIL) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

impl ProtoError {
    /// Whether this is only a read timeout (socket read timeout or non-blocking socket
    /// with nothing to read): the connection is still usable, and a [`Channel`] resumes a
    /// frame it was in the middle of.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ProtoError::Io(e) if is_timeout_kind(e.kind()))
    }
}

fn is_timeout_kind(kind: io::ErrorKind) -> bool {
    matches!(kind, io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// Encodes one payload as a frame (length prefix + payload).
pub fn encode_frame(payload: &[u8]) -> Result<Vec<u8>, ProtoError> {
    check_len(payload.len())?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
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

/// Just the `type` tag of a message, to tell an unknown type from a malformed known one.
#[derive(Deserialize)]
struct TypeTag<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<std::borrow::Cow<'a, str>>,
}

/// Decodes one frame's payload as a `T`: [`ProtoError::InvalidUtf8`] when it is not UTF-8,
/// [`ProtoError::UnknownType`] when its `type` tag is none of `T`'s, else
/// [`ProtoError::Malformed`] for anything serde refuses.
pub fn decode_message<T: Message>(payload: &[u8]) -> Result<T, ProtoError> {
    let text = std::str::from_utf8(payload).map_err(|e| ProtoError::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    match serde_json::from_str::<T>(text) {
        Ok(m) => Ok(m),
        Err(e) => {
            if !T::TYPES.is_empty() && e.classify() == serde_json::error::Category::Data {
                if let Ok(TypeTag { ty: Some(ty) }) = serde_json::from_str::<TypeTag>(text) {
                    if !T::TYPES.contains(&ty.as_ref()) {
                        return Err(ProtoError::UnknownType(bounded(&ty)));
                    }
                }
            }
            Err(e.into())
        }
    }
}

/// Incremental frame decoder: holds at most the one frame it is in the middle of, so
/// bytes can arrive in any pieces, with any pauses (read timeouts) between them, and the
/// next frame still starts exactly where the previous one ended.
///
/// Memory: the length prefix is checked (0 and over [`MAX_FRAME_LEN`] are errors) before
/// any payload buffer exists, and that buffer then grows with the bytes that arrive, never
/// past the declared length: [`FrameDecoder::allocated`] stays within
/// `HEADER_LEN + MAX_FRAME_LEN`.
///
/// After an error (a bad length) the decoder is poisoned: every later
/// [`FrameDecoder::decode`] is [`ProtoError::Poisoned`], since the stream can no longer be
/// cut into frames.
#[derive(Default)]
pub struct FrameDecoder {
    header: [u8; HEADER_LEN],
    header_got: usize,
    /// The declared payload length, once the whole header is in and checked.
    len: Option<usize>,
    payload: Vec<u8>,
    poisoned: bool,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes bytes from the front of `input`, never past the end of the current frame,
    /// and returns that frame's payload once it is complete (the rest of `input` is left
    /// for the next call). `Ok(None)`: all of `input` was consumed and the frame is still
    /// incomplete.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, ProtoError> {
        if self.poisoned {
            return Err(ProtoError::Poisoned);
        }
        loop {
            match self.len {
                None => {
                    let take = (HEADER_LEN - self.header_got).min(input.len());
                    self.header[self.header_got..self.header_got + take]
                        .copy_from_slice(&input[..take]);
                    self.header_got += take;
                    *input = &input[take..];
                    if self.header_got < HEADER_LEN {
                        return Ok(None);
                    }
                    let len = u32::from_be_bytes(self.header) as usize;
                    if let Err(e) = check_len(len) {
                        self.poisoned = true;
                        return Err(e);
                    }
                    self.len = Some(len);
                    self.payload = Vec::with_capacity(len.min(INITIAL_PAYLOAD_CAPACITY));
                }
                Some(len) => {
                    let take = (len - self.payload.len()).min(input.len());
                    let need = self.payload.len() + take;
                    if need > self.payload.capacity() {
                        // Double, but never past the declared length (reserve would round
                        // up past it).
                        let target = need.max(self.payload.capacity() * 2).min(len);
                        self.payload.reserve_exact(target - self.payload.len());
                    }
                    self.payload.extend_from_slice(&input[..take]);
                    *input = &input[take..];
                    if self.payload.len() < len {
                        return Ok(None);
                    }
                    self.header_got = 0;
                    self.len = None;
                    return Ok(Some(std::mem::take(&mut self.payload)));
                }
            }
        }
    }

    /// Decodes the next complete message from the front of `input`, if one completes.
    pub fn decode_message<T: Message>(
        &mut self,
        input: &mut &[u8],
    ) -> Result<Option<T>, ProtoError> {
        match self.decode(input)? {
            Some(p) => decode_message(&p).map(Some),
            None => Ok(None),
        }
    }

    /// How many more bytes the current header or payload needs: reading at most this many
    /// never reads into the next frame.
    pub fn needed(&self) -> usize {
        match self.len {
            None => HEADER_LEN - self.header_got,
            Some(len) => len - self.payload.len(),
        }
    }

    /// Whether part of a frame has been consumed (the stream must not end here).
    pub fn in_frame(&self) -> bool {
        self.header_got > 0
    }

    /// Bytes of the current, incomplete frame held so far (header included).
    pub fn buffered(&self) -> usize {
        self.header_got + self.payload.len()
    }

    /// Bytes of memory the decoder holds for the current frame (header included).
    pub fn allocated(&self) -> usize {
        HEADER_LEN + self.payload.capacity()
    }

    /// What the end of the stream means here: [`ProtoError::Closed`] between frames,
    /// [`ProtoError::TruncatedFrame`] (and poisoned) inside one.
    pub fn end_of_stream(&mut self) -> ProtoError {
        if self.in_frame() {
            self.poison();
            ProtoError::TruncatedFrame
        } else {
            ProtoError::Closed
        }
    }

    /// Marks the stream unusable (the caller saw an error it cannot resume from).
    pub fn poison(&mut self) {
        self.poisoned = true;
        self.payload = Vec::new();
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}

/// Reads one frame through `d`, reading never past the frame's end. A read timeout
/// returns the timeout error with `d` keeping the partial frame (call again to resume);
/// any other error poisons `d`.
fn read_frame_into<R: Read>(r: &mut R, d: &mut FrameDecoder) -> Result<Vec<u8>, ProtoError> {
    if d.is_poisoned() {
        return Err(ProtoError::Poisoned);
    }
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let want = d.needed().min(READ_CHUNK);
        match r.read(&mut chunk[..want]) {
            Ok(0) => return Err(d.end_of_stream()),
            Ok(n) => {
                let mut input = &chunk[..n.min(want)];
                if let Some(p) = d.decode(&mut input)? {
                    return Ok(p);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout_kind(e.kind()) => return Err(e.into()),
            Err(e) => {
                d.poison();
                return Err(e.into());
            }
        }
    }
}

/// Reads one frame from a blocking reader. `Ok(None)` on a clean end of stream at a frame
/// boundary; short reads are retried until the frame is complete. Stateless: a read
/// timeout in the middle of a frame loses the part already read, so a reader with a
/// timeout must go through a [`Channel`] (or its own [`FrameDecoder`]).
pub fn read_frame<R: Read>(r: &mut R) -> Result<Option<Vec<u8>>, ProtoError> {
    match read_frame_into(r, &mut FrameDecoder::new()) {
        Ok(p) => Ok(Some(p)),
        Err(ProtoError::Closed) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes one frame.
pub fn write_frame<W: Write>(w: &mut W, payload: &[u8]) -> Result<(), ProtoError> {
    w.write_all(&encode_frame(payload)?)?;
    w.flush()?;
    Ok(())
}

/// A typed, blocking message channel over any byte stream.
///
/// Receiving keeps a [`FrameDecoder`] across calls, so a read timeout (the stream's own:
/// `set_read_timeout`, or a non-blocking stream) in the middle of a frame is returned as
/// a timeout ([`ProtoError::is_timeout`]) and the next [`Channel::recv`] resumes that frame
/// exactly where it stopped. Every other receive error (end of stream, I/O error,
/// oversized or empty frame, invalid UTF-8, unknown message type, malformed message) ends
/// the receiving side for good: later receives return [`ProtoError::Closed`] after a clean
/// end, [`ProtoError::Poisoned`] otherwise, and never read from the stream again. A failed
/// send likewise ends the sending side (the peer may hold half a frame).
pub struct Channel<S> {
    stream: S,
    decoder: FrameDecoder,
    send_failed: bool,
}

impl<S: Read + Write> Channel<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            decoder: FrameDecoder::new(),
            send_failed: false,
        }
    }

    pub fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), ProtoError> {
        if self.send_failed {
            return Err(ProtoError::Poisoned);
        }
        let frame = encode_message(msg)?;
        if let Err(e) = self
            .stream
            .write_all(&frame)
            .and_then(|()| self.stream.flush())
        {
            self.send_failed = true;
            return Err(e.into());
        }
        Ok(())
    }

    /// Receives the next message; [`ProtoError::Closed`] on a clean end of stream. See
    /// the type's documentation for what a timeout and the other errors leave behind.
    pub fn recv<T: Message>(&mut self) -> Result<T, ProtoError> {
        let payload = read_frame_into(&mut self.stream, &mut self.decoder)?;
        decode_message(&payload).inspect_err(|_| self.decoder.poison())
    }

    /// Whether the receiving side has failed for good (see [`Channel::recv`]).
    pub fn is_poisoned(&self) -> bool {
        self.decoder.is_poisoned()
    }

    /// Memory the receiving side holds for a partial frame (bounded by
    /// `HEADER_LEN + MAX_FRAME_LEN`).
    pub fn recv_buffer_allocated(&self) -> usize {
        self.decoder.allocated()
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
        assert!(matches!(
            d.decode(&mut &u32::MAX.to_be_bytes()[..]),
            Err(ProtoError::FrameTooLarge { .. })
        ));
        assert_eq!(
            d.allocated(),
            HEADER_LEN,
            "no payload buffer for a refused length"
        );
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
        let (last, head) = bytes.split_last().unwrap();
        for (i, b) in head.iter().enumerate() {
            assert!(
                d.decode_message::<HostMessage>(&mut &[*b][..])
                    .unwrap()
                    .is_none(),
                "complete too early at {i}"
            );
        }
        assert_eq!(
            d.decode_message::<HostMessage>(&mut &[*last][..]).unwrap(),
            Some(msg)
        );
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn malformed_payload_is_an_error() {
        let mut d = FrameDecoder::new();
        let frame = encode_frame(b"{\"type\":\"stopTask\",\"reason\":7}").unwrap();
        assert!(matches!(
            d.decode_message::<HostMessage>(&mut &frame[..]),
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

    #[test]
    fn decoder_refuses_bad_lengths_and_stays_poisoned() {
        for (len, zero) in [
            (0u32, true),
            (MAX_FRAME_LEN as u32 + 1, false),
            (u32::MAX, false),
        ] {
            let mut d = FrameDecoder::new();
            let mut input = &len.to_be_bytes()[..];
            let err = d.decode(&mut input).unwrap_err();
            if zero {
                assert!(matches!(err, ProtoError::EmptyFrame), "{err}");
            } else {
                assert!(matches!(err, ProtoError::FrameTooLarge { .. }), "{err}");
            }
            assert_eq!(d.allocated(), HEADER_LEN);
            // Whatever follows, the stream is not cut into frames again.
            let good = encode_message(&log_msg("x")).unwrap();
            assert!(matches!(
                d.decode(&mut &good[..]),
                Err(ProtoError::Poisoned)
            ));
        }
    }

    #[test]
    fn decoder_stops_at_the_frame_end_and_leaves_the_rest() {
        let mut bytes = encode_message(&log_msg("a")).unwrap();
        let second = encode_message(&log_msg("b")).unwrap();
        bytes.extend_from_slice(&second[..3]);
        let mut d = FrameDecoder::new();
        let mut input = &bytes[..];
        let a: Option<GuestMessage> = d.decode_message(&mut input).unwrap();
        assert_eq!(a, Some(log_msg("a")));
        assert_eq!(input, &second[..3], "the next frame's bytes are left alone");
        assert!(d.decode(&mut input).unwrap().is_none());
        assert!(input.is_empty());
        assert!(d.in_frame());
        assert_eq!(d.needed(), 1, "one header byte missing");
        let b: Option<GuestMessage> = d.decode_message(&mut &second[3..]).unwrap();
        assert_eq!(b, Some(log_msg("b")));
        assert!(!d.in_frame());
    }

    #[test]
    fn payload_buffer_grows_with_what_arrives() {
        let mut d = FrameDecoder::new();
        // Declares the maximum and sends ten bytes.
        let mut input = &(MAX_FRAME_LEN as u32).to_be_bytes()[..];
        assert!(d.decode(&mut input).unwrap().is_none());
        assert!(d.decode(&mut &[b' '; 10][..]).unwrap().is_none());
        assert!(d.allocated() <= HEADER_LEN + INITIAL_PAYLOAD_CAPACITY);
        // Then all of it, in odd pieces: never past the declared length.
        let mut left = MAX_FRAME_LEN - 10;
        let piece = [b' '; 7777];
        while left > 0 {
            let n = left.min(piece.len());
            let got = d.decode(&mut &piece[..n]).unwrap();
            assert!(d.allocated() <= HEADER_LEN + MAX_FRAME_LEN);
            left -= n;
            assert_eq!(got.is_some(), left == 0);
        }
    }

    #[test]
    fn payloads_are_typed_errors() {
        type Check = fn(&ProtoError) -> bool;
        let cases: [(&[u8], Check); 6] = [
            (b"\xff\xfe{}", |e| {
                matches!(e, ProtoError::InvalidUtf8 { valid_up_to: 0 })
            }),
            (b"{\"type\":\"log\",\"line\":\"\xc3\"}", |e| {
                matches!(e, ProtoError::InvalidUtf8 { valid_up_to: 22 })
            }),
            (
                b"{\"type\":\"noSuchMessage\"}",
                |e| matches!(e, ProtoError::UnknownType(t) if t == "noSuchMessage"),
            ),
            (b"{\"type\":\"log\"}", |e| {
                matches!(e, ProtoError::Malformed(_))
            }),
            (b"{\"container\":\"c\"}", |e| {
                matches!(e, ProtoError::Malformed(_))
            }),
            (b"[1,2", |e| matches!(e, ProtoError::Malformed(_))),
        ];
        for (payload, ok) in cases {
            let err = decode_message::<GuestMessage>(payload).unwrap_err();
            assert!(ok(&err), "{payload:?}: {err}");
        }
        // A hostile tag is not echoed whole.
        let long = format!("{{\"type\":\"{}\"}}", "x".repeat(100_000));
        let err = decode_message::<GuestMessage>(long.as_bytes()).unwrap_err();
        assert!(matches!(err, ProtoError::UnknownType(_)));
        assert!(
            err.to_string().len() < 2 * MAX_ERROR_DETAIL,
            "{}",
            err.to_string().len()
        );
        let long = format!(
            "{{\"type\":\"log\",\"stream\":\"{}\"}}",
            "y".repeat(100_000)
        );
        let err = decode_message::<GuestMessage>(long.as_bytes()).unwrap_err();
        assert!(
            err.to_string().len() < 2 * MAX_ERROR_DETAIL,
            "{}",
            err.to_string().len()
        );
    }

    /// A reader that hands out at most `every` bytes per read and times out between
    /// reads, like a socket with a read timeout and a slow peer.
    struct Stutter {
        data: Vec<u8>,
        at: usize,
        every: usize,
        timed_out: bool,
    }
    impl Read for Stutter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.timed_out && self.at < self.data.len() {
                self.timed_out = true;
                return Err(io::Error::from(io::ErrorKind::WouldBlock));
            }
            self.timed_out = false;
            let n = (self.data.len() - self.at).min(buf.len()).min(self.every);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }
    impl Write for Stutter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn channel_resumes_frames_across_timeouts() {
        let msgs: Vec<GuestMessage> = (0..20).map(|i| log_msg(&"z".repeat(i * 7))).collect();
        let data: Vec<u8> = msgs
            .iter()
            .flat_map(|m| encode_message(m).unwrap())
            .collect();
        for every in [1, 2, 3, 5, 13] {
            let mut ch = Channel::new(Stutter {
                data: data.clone(),
                at: 0,
                every,
                timed_out: false,
            });
            let mut got = Vec::new();
            let mut timeouts = 0;
            loop {
                match ch.recv::<GuestMessage>() {
                    Ok(m) => got.push(m),
                    Err(e) if e.is_timeout() => timeouts += 1,
                    Err(ProtoError::Closed) => break,
                    Err(e) => panic!("every {every}: {e}"),
                }
            }
            assert_eq!(got, msgs, "every {every}");
            assert!(timeouts > msgs.len(), "every {every}: {timeouts} timeouts");
        }
    }

    #[test]
    fn channel_is_poisoned_after_an_error() {
        let mut data = encode_frame(b"{\"type\":\"bogus\"}").unwrap();
        data.extend(encode_message(&log_msg("after")).unwrap());
        let mut ch = Channel::new(Stutter {
            data,
            at: 0,
            every: usize::MAX,
            timed_out: true,
        });
        let err = loop {
            match ch.recv::<GuestMessage>() {
                Err(e) if e.is_timeout() => {}
                other => break other.unwrap_err(),
            }
        };
        assert!(matches!(err, ProtoError::UnknownType(_)), "{err}");
        assert!(ch.is_poisoned());
        assert!(matches!(
            ch.recv::<GuestMessage>(),
            Err(ProtoError::Poisoned)
        ));
    }
}
