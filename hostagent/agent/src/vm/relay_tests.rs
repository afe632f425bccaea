use super::*;
use guest_proto::{ContainerStatus, TaskSpec};

fn fake_guest(
    uds: PathBuf,
    out: std::sync::mpsc::Sender<HostMessage>,
    script: std::sync::mpsc::Receiver<Option<GuestMessage>>,
) {
    let path = guest_proto::host::guest_initiated_socket_path(&uds, guest_proto::CONTROL_PORT);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let stream = loop {
        match UnixStream::connect(&path) {
            Ok(s) => break s,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("guest connect: {e}"),
        }
    };
    let mut chan = Channel::new(stream);
    chan.handshake(Role::Guest, "fake-guest").unwrap();
    let mut reader = Channel::new(chan.get_ref().try_clone().unwrap());
    std::thread::spawn(move || {
        while let Ok(m) = reader.recv::<HostMessage>() {
            if out.send(m).is_err() {
                return;
            }
        }
    });
    // None: hang up.
    while let Ok(Some(m)) = script.recv() {
        chan.send(&m).unwrap();
    }
    // Like a VM that resets: the connection ends for both directions.
    let _ = chan.get_ref().shutdown(std::net::Shutdown::Both);
}

fn log(line: &str) -> GuestMessage {
    GuestMessage::Log {
        container: "web".into(),
        stream: guest_proto::LogStream::Stdout,
        timestamp_ms: 1,
        line: line.into(),
    }
}

/// A relay and a fake guest connected to it.
struct Rig {
    args: RelayArgs,
    relay: std::thread::JoinHandle<Result<(), String>>,
    /// What the guest receives.
    host_rx: std::sync::mpsc::Receiver<HostMessage>,
    /// The guest's script (None hangs up).
    script_tx: std::sync::mpsc::Sender<Option<GuestMessage>>,
    guest: std::thread::JoinHandle<()>,
}

/// A relay in `dir` and a fake guest connected to it.
fn relay_with_guest(dir: &std::path::Path) -> Rig {
    let uds = dir.join("v.sock");
    let args = RelayArgs {
        guest_socket: guest_proto::host::guest_initiated_socket_path(
            &uds,
            guest_proto::CONTROL_PORT,
        ),
        agent_socket: dir.join("relay.sock"),
        owner: nix_ids(),
        boot_timeout: Duration::from_secs(10),
    };
    let relay = {
        let a = args.clone();
        std::thread::spawn(move || run(&a))
    };
    let (host_tx, host_rx) = std::sync::mpsc::channel();
    let (script_tx, script_rx) = std::sync::mpsc::channel();
    let guest = std::thread::spawn(move || fake_guest(uds, host_tx, script_rx));
    Rig {
        args,
        relay,
        host_rx,
        script_tx,
        guest,
    }
}

#[test]
fn relay_survives_an_agent_restart_and_delivers_everything() {
    let d = tempfile::tempdir().unwrap();
    let Rig {
        args,
        relay,
        host_rx,
        script_tx,
        guest,
    } = relay_with_guest(d.path());
    // First agent: sends the task, gets the first messages.
    let mut a1 = connect(&args.agent_socket, Duration::from_secs(5)).unwrap();
    a1.run_task(&TaskSpec {
        task_arn: "arn:t".into(),
        ..Default::default()
    })
    .unwrap();
    match host_rx.recv_timeout(Duration::from_secs(5)).unwrap() {
        HostMessage::RunTask { task } => assert_eq!(task.task_arn, "arn:t"),
        m => panic!("{m:?}"),
    }
    script_tx
        .send(Some(GuestMessage::TaskAccepted {
            task_arn: "arn:t".into(),
        }))
        .unwrap();
    script_tx.send(Some(log("one"))).unwrap();
    assert!(matches!(
        a1.recv().unwrap(),
        GuestMessage::TaskAccepted { .. }
    ));
    assert_eq!(a1.recv().unwrap(), log("one"));
    // The agent dies; the guest goes on talking.
    drop(a1);
    script_tx.send(Some(log("two"))).unwrap();
    script_tx
        .send(Some(GuestMessage::ContainerStateChange {
            container: "web".into(),
            status: ContainerStatus::Running,
            exit_code: None,
            reason: None,
            pid: Some(5),
            timestamp_ms: 2,
        }))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // A new agent gets what it missed, and can stop the task.
    let mut a2 = connect(&args.agent_socket, Duration::from_secs(5)).unwrap();
    assert_eq!(a2.recv().unwrap(), log("two"));
    assert!(matches!(
        a2.recv().unwrap(),
        GuestMessage::ContainerStateChange { .. }
    ));
    a2.stop_task("user", false).unwrap();
    match host_rx.recv_timeout(Duration::from_secs(5)).unwrap() {
        HostMessage::StopTask { reason, spot } => {
            assert_eq!((reason.as_str(), spot), ("user", false))
        }
        m => panic!("{m:?}"),
    }
    script_tx
        .send(Some(GuestMessage::TaskStopped {
            reason: "user".into(),
            containers: vec![],
        }))
        .unwrap();
    script_tx.send(None).unwrap();
    guest.join().unwrap();
    assert!(matches!(
        a2.recv().unwrap(),
        GuestMessage::TaskStopped { .. }
    ));
    assert!(matches!(a2.recv(), Err(guest_proto::ProtoError::Closed)));
    relay.join().unwrap().unwrap();
    assert!(!args.agent_socket.exists());
}

#[test]
fn relay_takes_a_new_agent_while_the_guest_is_silent() {
    // An idle task (a web server nobody calls) sends nothing: the relay must notice the
    // killed agent from its end of the socket, not from a failed write.
    let d = tempfile::tempdir().unwrap();
    let Rig {
        args,
        relay,
        host_rx,
        script_tx,
        guest,
    } = relay_with_guest(d.path());
    let mut a1 = connect(&args.agent_socket, Duration::from_secs(5)).unwrap();
    a1.run_task(&TaskSpec {
        task_arn: "arn:idle".into(),
        ..Default::default()
    })
    .unwrap();
    assert!(matches!(
        host_rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        HostMessage::RunTask { .. }
    ));
    drop(a1);
    // Nothing from the guest; the second agent's handshake must still be answered
    // (connect gives the relay 5 s).
    let mut a2 = connect(&args.agent_socket, Duration::from_secs(5))
        .expect("the relay accepts the next agent while the guest is silent");
    a2.stop_task("after restart", false).unwrap();
    assert!(matches!(
        host_rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        HostMessage::StopTask { .. }
    ));
    script_tx.send(None).unwrap();
    guest.join().unwrap();
    assert!(matches!(a2.recv(), Err(guest_proto::ProtoError::Closed)));
    relay.join().unwrap().unwrap();
}

#[test]
fn relay_gives_up_when_the_guest_never_connects() {
    let d = tempfile::tempdir().unwrap();
    let args = RelayArgs {
        guest_socket: d.path().join("v.sock_1024"),
        agent_socket: d.path().join("relay.sock"),
        owner: nix_ids(),
        boot_timeout: Duration::from_millis(300),
    };
    let relay = {
        let a = args.clone();
        std::thread::spawn(move || run(&a))
    };
    let mut a = connect(&args.agent_socket, Duration::from_secs(5)).unwrap();
    assert!(a.recv().is_err(), "the relay hangs up");
    let e = relay.join().unwrap().unwrap_err();
    assert!(e.contains("never connected"), "{e}");
}

fn nix_ids() -> (u32, u32) {
    // SAFETY: getuid/getgid cannot fail and take no arguments.
    unsafe { (libc::getuid(), libc::getgid()) }
}
