//! A hostile guest against the host's end, over real Unix sockets: frames cut by read
//! timeouts, truncated frames, bad lengths, invalid UTF-8, unknown types, garbage.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use guest_proto::frame::{encode_frame, encode_message, read_frame, write_frame};
use guest_proto::host::{GuestConnection, HostListener};
use guest_proto::messages::{Hello, Role};
use guest_proto::*;

/// A connected pair after the handshake: the host's connection and the guest's raw socket.
fn connect(dir: &tempfile::TempDir) -> (GuestConnection, UnixStream, HostListener) {
    let listener = HostListener::bind(&dir.path().join("v.sock"), CONTROL_PORT).unwrap();
    let mut guest = UnixStream::connect(listener.path()).unwrap();
    write_frame(
        &mut guest,
        &serde_json::to_vec(&Hello::new(Role::Guest, "hostile")).unwrap(),
    )
    .unwrap();
    let conn = listener.accept(Duration::from_secs(10)).unwrap();
    let hello: Hello = serde_json::from_slice(&read_frame(&mut guest).unwrap().unwrap()).unwrap();
    assert_eq!(hello.role, Role::Host);
    (conn, guest, listener)
}

fn log(line: &str) -> GuestMessage {
    GuestMessage::Log {
        container: "web".into(),
        stream: LogStream::Stdout,
        timestamp_ms: 1,
        line: line.into(),
    }
}

/// Receives, skipping read timeouts, until a message or another error (bounded: 10 s).
fn recv_skipping_timeouts(conn: &mut GuestConnection) -> Result<GuestMessage, ProtoError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match conn.recv() {
            Err(e) if e.is_timeout() && Instant::now() < deadline => {}
            other => return other,
        }
    }
}

/// The host hung up: the guest's next read sees the end of the stream.
fn assert_host_hung_up(guest: &mut UnixStream) {
    guest
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(
        guest.read(&mut buf).unwrap(),
        0,
        "host closed the connection"
    );
}

#[test]
fn read_timeout_in_the_middle_of_a_frame_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut conn, guest, _l) = connect(&dir);
    conn.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let first = encode_message(&log(&"a".repeat(5000))).unwrap();
    let second = encode_message(&log("second")).unwrap();
    // Cut inside the header, then inside the payload.
    for cut in [2, 4, 100, first.len() - 1] {
        let writer = {
            let mut g = guest.try_clone().unwrap();
            let (first, second) = (first.clone(), second.clone());
            std::thread::spawn(move || {
                g.write_all(&first[..cut]).unwrap();
                std::thread::sleep(Duration::from_millis(200));
                g.write_all(&first[cut..]).unwrap();
                g.write_all(&second).unwrap();
            })
        };
        let err = conn.recv().unwrap_err();
        assert!(err.is_timeout(), "cut {cut}: first read times out: {err}");
        assert_eq!(
            recv_skipping_timeouts(&mut conn).unwrap(),
            log(&"a".repeat(5000)),
            "cut {cut}"
        );
        assert_eq!(recv_skipping_timeouts(&mut conn).unwrap(), log("second"));
        writer.join().unwrap();
    }
    guest.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(matches!(
        recv_skipping_timeouts(&mut conn),
        Err(ProtoError::Closed)
    ));
}

#[test]
fn truncated_frames_end_the_connection() {
    let msg = encode_message(&log("hello")).unwrap();
    for cut in [1, 3, 4, 5, msg.len() - 1] {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, mut guest, _l) = connect(&dir);
        guest.write_all(&msg[..cut]).unwrap();
        guest.shutdown(std::net::Shutdown::Write).unwrap();
        let err = conn.recv().unwrap_err();
        assert!(
            matches!(err, ProtoError::TruncatedFrame),
            "cut {cut}: {err}"
        );
        assert!(matches!(conn.recv(), Err(ProtoError::Poisoned)));
        assert_host_hung_up(&mut guest);
    }
}

/// Writes `bytes` after the handshake, then a valid message; the host must end the
/// connection with the error `expected` accepts and never deliver the valid message.
fn refused(bytes: &[u8], expected: fn(&ProtoError) -> bool) {
    let dir = tempfile::tempdir().unwrap();
    let (mut conn, mut guest, _l) = connect(&dir);
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    guest.write_all(bytes).unwrap();
    // The connection may already be shut down: a failed write is fine.
    let _ = guest.write_all(&encode_message(&log("after")).unwrap());
    let err = conn.recv().unwrap_err();
    assert!(expected(&err), "{bytes:?}: {err}");
    assert!(matches!(conn.recv(), Err(ProtoError::Poisoned)));
    assert_host_hung_up(&mut guest);
    // A clone cannot send once the connection ended.
    assert!(conn.try_clone().unwrap().stop_task("x", false).is_err());
    assert!(matches!(
        conn.try_clone().unwrap().recv(),
        Err(ProtoError::SendOnly)
    ));
}

#[test]
fn bad_lengths_end_the_connection_before_allocation() {
    refused(&0u32.to_be_bytes(), |e| matches!(e, ProtoError::EmptyFrame));
    for len in [MAX_FRAME_LEN as u32 + 1, u32::MAX] {
        refused(&len.to_be_bytes(), |e| {
            matches!(e, ProtoError::FrameTooLarge { .. })
        });
    }
}

#[test]
fn invalid_utf8_unknown_types_and_garbage_end_the_connection() {
    refused(
        &encode_frame(b"{\"type\":\"log\",\"line\":\"\xff\"}").unwrap(),
        |e| matches!(e, ProtoError::InvalidUtf8 { .. }),
    );
    refused(
        &encode_frame(b"{\"type\":\"launchMissiles\",\"at\":1}").unwrap(),
        |e| matches!(e, ProtoError::UnknownType(t) if t == "launchMissiles"),
    );
    refused(&encode_frame(b"{\"type\":\"log\"}").unwrap(), |e| {
        matches!(e, ProtoError::Malformed(_))
    });
    refused(&encode_frame(b"\x00\x01garbage").unwrap(), |e| {
        matches!(e, ProtoError::Malformed(_))
    });
    // An HTTP client or any other stranger: its first bytes read as a huge length.
    refused(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", |e| {
        matches!(e, ProtoError::FrameTooLarge { .. })
    });
}

#[test]
fn a_peer_that_declares_the_maximum_and_stalls_pins_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (mut conn, mut guest, _l) = connect(&dir);
    conn.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    guest
        .write_all(&(MAX_FRAME_LEN as u32).to_be_bytes())
        .unwrap();
    guest.write_all(b"{\"type\":").unwrap();
    for _ in 0..3 {
        assert!(conn.recv().unwrap_err().is_timeout());
    }
    assert!(
        conn.recv_buffer_allocated() <= 16 * 1024,
        "{} bytes held for 12 received",
        conn.recv_buffer_allocated()
    );
}
