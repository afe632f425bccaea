use super::*;
use guest_proto::messages::Role;
use guest_proto::{Channel, HostMessage};
use std::os::unix::net::UnixStream;

fn change(name: &str, status: ContainerStatus, code: Option<i32>) -> GuestMessage {
    GuestMessage::ContainerStateChange {
        container: name.into(),
        status,
        exit_code: code,
        reason: None,
        pid: None,
        timestamp_ms: 1,
    }
}

fn names() -> Vec<String> {
    vec!["web".into(), "side".into()]
}

#[test]
fn tracker_follows_the_guest_and_ignores_strangers() {
    let mut t = Tracker::new("arn:t", &names(), Status::Pending);
    assert!(!t.all_started());
    assert!(t
        .apply(change("nobody", ContainerStatus::Running, None))
        .is_none());
    let ev = t
        .apply(change("web", ContainerStatus::Running, None))
        .unwrap();
    assert!(
        matches!(ev, TaskEvent::Container { ref state, .. } if state.name == "web" && state.last_status == Status::Running)
    );
    assert!(!t.all_started());
    t.apply(change("side", ContainerStatus::Stopped, Some(0)));
    assert!(t.all_started());
    let long = "x".repeat(100_000);
    match t.apply(GuestMessage::Log {
        container: "web".into(),
        stream: guest_proto::LogStream::Stderr,
        timestamp_ms: 5,
        line: long,
    }) {
        Some(TaskEvent::Log { line, stream, .. }) => {
            assert_eq!(line.len(), MAX_LINE);
            assert_eq!(stream, LogStream::Stderr);
        }
        e => panic!("{e:?}"),
    }
    assert!(t
        .apply(GuestMessage::Log {
            container: "nobody".into(),
            stream: guest_proto::LogStream::Stdout,
            timestamp_ms: 5,
            line: "x".into(),
        })
        .is_none());
    assert_eq!(
        t.final_states("vm exited")[0].reason.as_deref(),
        Some("vm exited")
    );
    t.apply(GuestMessage::TaskStopped {
        reason: "Essential container in task exited".into(),
        containers: vec![guest_proto::ContainerState {
            name: "web".into(),
            status: ContainerStatus::Stopped,
            exit_code: Some(137),
            reason: None,
        }],
    });
    let f = t.final_states("ignored");
    assert_eq!(f[0].exit_code, Some(137));
    assert_eq!(f[1].exit_code, Some(0));
    assert!(f.iter().all(|c| c.last_status == Status::Stopped));
    assert_eq!(
        t.stopped.as_ref().unwrap().0,
        "Essential container in task exited"
    );
}

/// A scripted guest on the other end of a socket pair.
fn session(
    script: Vec<GuestMessage>,
) -> (GuestConnection, std::thread::JoinHandle<Vec<HostMessage>>) {
    let (h, g) = UnixStream::pair().unwrap();
    let guest = std::thread::spawn(move || {
        let mut chan = Channel::new(g);
        chan.handshake(Role::Guest, "fake").unwrap();
        let first: HostMessage = chan.recv().unwrap();
        for m in script {
            chan.send(&m).unwrap();
        }
        // Keep the connection open a little (a silent guest), then hang up.
        std::thread::sleep(Duration::from_millis(1500));
        vec![first]
    });
    (GuestConnection::handshake(h).unwrap(), guest)
}

fn run(
    script: Vec<GuestMessage>,
    alive: bool,
) -> (Result<(), LaunchFailure>, Tracker, Vec<TaskEvent>) {
    let (mut conn, guest) = session(script);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut t = Tracker::new("arn:t", &names(), Status::Pending);
    let task = guest_proto::TaskSpec {
        task_arn: "arn:t".into(),
        ..Default::default()
    };
    let r = start_task(
        &mut conn,
        &task,
        &mut t,
        Duration::from_millis(400),
        Duration::from_millis(400),
        &|| alive,
        &tx,
    );
    let sent = guest.join().unwrap();
    assert!(matches!(&sent[0], HostMessage::RunTask { task } if task.task_arn == "arn:t"));
    let mut evs = vec![];
    while let Ok(e) = rx.try_recv() {
        evs.push(e);
    }
    (r, t, evs)
}

#[test]
fn start_task_waits_for_every_container() {
    let (r, t, evs) = run(
        vec![
            GuestMessage::TaskAccepted {
                task_arn: "arn:t".into(),
            },
            change("web", ContainerStatus::Running, None),
            change("side", ContainerStatus::Running, None),
        ],
        true,
    );
    r.unwrap();
    assert!(t.all_started());
    assert_eq!(evs.len(), 2);
}

#[test]
fn start_task_failures_name_their_step() {
    let (r, _, _) = run(vec![], true);
    let e = r.unwrap_err();
    assert_eq!(e.step, "vm boot", "{e}");
    assert!(e.reason.contains("did not answer"), "{e}");
    let (r, _, _) = run(vec![], false);
    assert_eq!(r.unwrap_err().reason, "the vmm exited");
    let (r, _, _) = run(
        vec![
            GuestMessage::TaskAccepted {
                task_arn: "arn:t".into(),
            },
            change("web", ContainerStatus::Running, None),
        ],
        true,
    );
    let e = r.unwrap_err();
    assert_eq!(
        (e.step.as_str(), e.reason.contains("not running")),
        ("guest", true),
        "{e}"
    );
    let (r, _, _) = run(
        vec![
            GuestMessage::TaskAccepted {
                task_arn: "arn:t".into(),
            },
            GuestMessage::TaskStopped {
                reason: "Essential container in task exited".into(),
                containers: vec![guest_proto::ContainerState {
                    name: "web".into(),
                    status: ContainerStatus::Stopped,
                    exit_code: None,
                    reason: Some("CannotStartContainerError: no such file".into()),
                }],
            },
        ],
        true,
    );
    let e = r.unwrap_err();
    assert_eq!(e.step, "guest");
    assert!(e.reason.contains("web: CannotStartContainerError"), "{e}");
    let (r, _, _) = run(
        vec![GuestMessage::Error {
            message: "bad spec".into(),
            fatal: true,
        }],
        true,
    );
    assert_eq!(r.unwrap_err().reason, "bad spec");
}
