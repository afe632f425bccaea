//! The host listener against a fake guest on a real Unix socket.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use guest_proto::frame::{read_frame, write_frame};
use guest_proto::host::{guest_initiated_socket_path, HostListener};
use guest_proto::messages::Role;
use guest_proto::*;

#[test]
fn guest_initiated_connection_handshake_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let listener = HostListener::bind(&uds, CONTROL_PORT).unwrap();
    assert_eq!(listener.path(), guest_initiated_socket_path(&uds, 1024));
    assert!(listener.path().to_str().unwrap().ends_with("v.sock_1024"));

    let path = listener.path().to_path_buf();
    let guest = std::thread::spawn(move || {
        let mut ch = Channel::new(UnixStream::connect(path).unwrap());
        let host = ch.handshake(Role::Guest, "fake-guest").unwrap();
        assert_eq!(host.role, Role::Host);
        let HostMessage::RunTask { task } = ch.recv().unwrap() else {
            panic!("expected RunTask")
        };
        ch.send(&GuestMessage::TaskAccepted {
            task_arn: task.task_arn,
        })
        .unwrap();
        let stop: HostMessage = ch.recv().unwrap();
        assert_eq!(
            stop,
            HostMessage::StopTask {
                reason: "bye".into(),
                spot: true
            }
        );
        ch.send(&GuestMessage::TaskStopped {
            reason: "bye".into(),
            containers: vec![],
        })
        .unwrap();
    });

    let mut conn = listener.accept(Duration::from_secs(10)).unwrap();
    assert_eq!(conn.peer.agent, "fake-guest");
    let task = TaskSpec {
        task_arn: "t1".into(),
        ..Default::default()
    };
    conn.run_task(&task).unwrap();
    assert_eq!(
        conn.recv().unwrap(),
        GuestMessage::TaskAccepted {
            task_arn: "t1".into()
        }
    );
    conn.try_clone().unwrap().stop_task("bye", true).unwrap();
    assert!(matches!(
        conn.recv().unwrap(),
        GuestMessage::TaskStopped { .. }
    ));
    assert!(matches!(conn.recv(), Err(ProtoError::Closed)));
    guest.join().unwrap();
    drop(listener);
    assert!(
        !uds.with_file_name("v.sock_1024").exists(),
        "socket file removed on drop"
    );
}

#[test]
fn wrong_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let listener = HostListener::bind(&dir.path().join("v.sock"), 52).unwrap();
    let path = listener.path().to_path_buf();
    let guest = std::thread::spawn(move || {
        let mut s = UnixStream::connect(path).unwrap();
        let mut hello = messages::Hello::new(Role::Guest, "old-guest");
        hello.version = 0;
        write_frame(&mut s, &serde_json::to_vec(&hello).unwrap()).unwrap();
        // The host still sends its own hello before judging ours.
        read_frame(&mut s).unwrap()
    });
    let err = listener
        .accept(Duration::from_secs(10))
        .err()
        .expect("handshake must fail");
    assert!(
        matches!(
            err,
            ProtoError::BadVersion {
                peer: 0,
                ours: PROTOCOL_VERSION
            }
        ),
        "{err}"
    );
    assert!(guest.join().unwrap().is_some());
}

#[test]
fn accept_times_out_without_a_guest() {
    let dir = tempfile::tempdir().unwrap();
    let listener = HostListener::bind(&dir.path().join("v.sock"), 1024).unwrap();
    let err = listener
        .accept(Duration::from_millis(50))
        .err()
        .expect("no guest");
    assert!(matches!(err, ProtoError::Io(ref e) if e.kind() == std::io::ErrorKind::TimedOut));
}
