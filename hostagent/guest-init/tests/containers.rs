//! Runs real tasks of busybox containers on this host, without a VM: the guest init's
//! `run` mode in its own mount and network namespaces (`unshare -m -n`), talking to this test
//! (the host side) over a Unix socket with the real protocol. Needs root; skipped otherwise.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use guest_proto::host::HostListener;
use guest_proto::*;

/// These tests need root (namespaces, mounts): true, after saying so, when they must skip.
fn skip_unless_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return false;
    }
    eprintln!("SKIPPED: needs root (namespaces, mounts)");
    true
}

/// A busybox image root: /bin/busybox plus applet links, /etc/passwd and /etc/group.
fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("image");
    for d in ["bin", "etc", "tmp", "www"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "echo", "cat", "sleep", "httpd", "wget", "id", "pwd", "hostname", "ls", "true",
        "false",
    ] {
        symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    std::fs::write(root.join("etc/image-marker"), "from-the-image\n").unwrap();
    root
}

struct Guest {
    _dir: tempfile::TempDir,
    root: PathBuf,
    listener: HostListener,
    child: Child,
    cgroup: Option<PathBuf>,
}

fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let mp = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    })?;
    let dir = mp.join(format!(
        "guest-init-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir(&dir).ok()?;
    Some(dir)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The binary under test: `GUEST_INIT_BIN` (e.g. the static release build) or this build's.
fn guest_init_bin() -> String {
    std::env::var("GUEST_INIT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_guest-init").to_string())
}

/// The usual start of a test: `guest-init run` in new mount + network namespaces,
/// connected back to us; `None` (the test is skipped) unless we are root.
fn start_guest() -> Option<Guest> {
    start_guest_with("true")
}

/// Same, running `setup` (shell) in the new namespaces first.
fn start_guest_with(setup: &str) -> Option<Guest> {
    if skip_unless_root() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = busybox_rootfs(dir.path());
    let listener = HostListener::bind_path(&dir.path().join("control.sock")).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let cgroup = cgroup2_root();
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--net",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
    ])
    .arg(format!("{setup} && exec \"$0\" \"$@\""))
    .arg(guest_init_bin())
    .arg("run")
    .arg(format!("--connect=unix:{}", listener.path().display()))
    .arg(format!("--state-dir={}", state.display()))
    .args(["--tmpfs-state", "--configure-network"])
    .stdin(Stdio::null());
    if let Some(cg) = &cgroup {
        cmd.arg(format!("--cgroup-root={}", cg.display()));
    }
    let child = cmd.spawn().expect("unshare guest-init");
    Some(Guest {
        _dir: dir,
        root,
        listener,
        child,
        cgroup,
    })
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(cg) = &self.cgroup {
            let _ = std::fs::remove_dir(cg);
        }
    }
}

fn container(name: &str, root: &Path, cmd: &[&str]) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        root_device: root.display().to_string(),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        essential: false,
        ..Default::default()
    }
}

fn dep(name: &str, condition: Condition) -> Vec<Dependency> {
    vec![Dependency {
        container_name: name.into(),
        condition,
    }]
}

fn lo() -> Vec<NetInterface> {
    vec![NetInterface {
        name: Some("lo".into()),
        addresses: vec!["127.0.0.1/8".into()],
        ..Default::default()
    }]
}

type StopWhen = dyn Fn(&[GuestMessage]) -> bool;

/// Everything the guest said, in order, until it closed the connection.
/// `stop_when`: the host sends StopTask once this holds for the messages so far.
fn run_task(g: &mut Guest, task: &TaskSpec, stop_when: Option<&StopWhen>) -> Vec<GuestMessage> {
    let mut conn = g
        .listener
        .accept(Duration::from_secs(30))
        .expect("guest connects");
    conn.run_task(task).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut msgs = Vec::new();
    let start = Instant::now();
    let mut stop_sent = false;
    loop {
        // Safety net only (a hung guest), not a performance assertion.
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "task did not finish; got {msgs:#?}"
        );
        if let Some(cond) = stop_when {
            if !stop_sent && cond(&msgs) {
                conn.stop_task("test says stop", false).unwrap();
                stop_sent = true;
            }
        }
        match conn.recv() {
            Ok(m) => msgs.push(m),
            Err(ProtoError::Closed) => break,
            Err(e) if e.is_timeout() => {}
            Err(e) => panic!("channel error {e}; got {msgs:#?}"),
        }
    }
    let st = g.child.wait().unwrap();
    assert!(st.success(), "guest-init exited with {st}");
    msgs
}

fn logs(msgs: &[GuestMessage], container: &str, stream: LogStream) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match m {
            GuestMessage::Log {
                container: c,
                stream: s,
                line,
                ..
            } if c == container && *s == stream => Some(line.clone()),
            _ => None,
        })
        .collect()
}

/// Index of the message where `container` reached `status`.
fn when(msgs: &[GuestMessage], container: &str, status: ContainerStatus) -> usize {
    msgs.iter()
        .position(|m| matches!(m, GuestMessage::ContainerStateChange { container: c, status: s, .. } if c == container && *s == status))
        .unwrap_or_else(|| panic!("{container} never reached {status:?}: {msgs:#?}"))
}

fn final_states(msgs: &[GuestMessage]) -> (String, Vec<ContainerState>) {
    match msgs.last() {
        Some(GuestMessage::TaskStopped { reason, containers }) => {
            (reason.clone(), containers.clone())
        }
        other => panic!("last message is not TaskStopped: {other:?}\n{msgs:#?}"),
    }
}

fn exit_of(states: &[ContainerState], name: &str) -> Option<i32> {
    states
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .exit_code
}

#[test]
fn http_server_shared_volume_dependencies_health_and_essential_exit() {
    let Some(mut g) = start_guest() else {
        return;
    };
    let r = g.root.clone();
    let mut writer = container("writer", &r, &["sh", "-c", "echo hello-from-writer > /data/index.html && echo wrote && echo oops >&2 && cat /etc/image-marker"]);
    writer.mount_points = vec![MountPoint {
        source_volume: "shared".into(),
        container_path: "/data".into(),
        read_only: false,
    }];
    let mut web = container(
        "web",
        &r,
        &["httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www"],
    );
    web.essential = true;
    web.stop_timeout = Some(2); // httpd has no SIGTERM handler as PID 1: it gets SIGKILL
    web.depends_on = dep("writer", Condition::Success);
    web.mount_points = vec![MountPoint {
        source_volume: "shared".into(),
        container_path: "/www".into(),
        read_only: true,
    }];
    web.health_check = Some(HealthCheck {
        command: vec![
            "CMD-SHELL".into(),
            "wget -q -O /dev/null http://127.0.0.1:8080/index.html".into(),
        ],
        interval: Some(5),
        retries: Some(3),
        ..Default::default()
    });
    web.cpu = 256;
    web.memory_reservation = Some(64);
    let mut client = container("client", &r, &["sh", "-c", "wget -q -O - http://127.0.0.1:8080/index.html; id -u; pwd; echo $GREETING; hostname; touch /www/x 2>/dev/null || echo volume-is-read-only; grep ^0:: /proc/self/cgroup >&2; ulimit -n"]);
    client.depends_on = dep("web", Condition::Healthy);
    client.ulimits = vec![Ulimit {
        name: "nofile".into(),
        soft_limit: 777,
        hard_limit: 888,
    }];
    client.user = Some("nobody".into());
    client.working_directory = Some("/tmp".into());
    client
        .environment
        .insert("GREETING".into(), "hi-there".into());
    client.mount_points = vec![MountPoint {
        source_volume: "shared".into(),
        container_path: "/www".into(),
        read_only: true,
    }];
    let mut trapper = container(
        "trapper",
        &r,
        &[
            "sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.1; done",
        ],
    );
    trapper.depends_on = dep("writer", Condition::Start);
    let mut last = container("last", &r, &["echo bye; exit 7"]);
    last.entry_point = vec!["sh".into(), "-c".into()];
    last.essential = true;
    last.depends_on = dep("client", Condition::Complete);
    let task = TaskSpec {
        task_arn: "arn:aws:ecs:local:1:task/test/one".into(),
        hostname: Some("task-host".into()),
        interfaces: lo(),
        volumes: vec![Volume {
            name: "shared".into(),
        }],
        containers: vec![web, client, trapper, last, writer],
        ..Default::default()
    };
    let msgs = run_task(&mut g, &task, None);

    assert!(matches!(msgs[0], GuestMessage::TaskAccepted { .. }));
    // Logs with the right stream.
    assert_eq!(
        logs(&msgs, "writer", LogStream::Stdout),
        vec!["wrote", "from-the-image"]
    );
    assert_eq!(logs(&msgs, "writer", LogStream::Stderr), vec!["oops"]);
    // The client read the writer's file through the web server; user, cwd, env, hostname,
    // read-only volume, ulimit.
    assert_eq!(
        logs(&msgs, "client", LogStream::Stdout),
        vec![
            "hello-from-writer",
            "65534",
            "/tmp",
            "hi-there",
            "task-host",
            "volume-is-read-only",
            "777"
        ]
    );
    assert_eq!(
        logs(&msgs, "trapper", LogStream::Stdout),
        vec!["ready", "got-term"]
    );
    assert_eq!(logs(&msgs, "last", LogStream::Stdout), vec!["bye"]);
    // dependsOn order.
    assert!(
        when(&msgs, "writer", ContainerStatus::Stopped)
            < when(&msgs, "web", ContainerStatus::Running)
    );
    let healthy = msgs
        .iter()
        .position(|m| matches!(m, GuestMessage::HealthChange { container, status: HealthStatus::Healthy, .. } if container == "web"))
        .expect("web became healthy");
    assert!(healthy < when(&msgs, "client", ContainerStatus::Running));
    assert!(
        when(&msgs, "client", ContainerStatus::Stopped)
            < when(&msgs, "last", ContainerStatus::Running)
    );
    assert!(
        when(&msgs, "writer", ContainerStatus::Running)
            < when(&msgs, "trapper", ContainerStatus::Running)
    );
    // The essential `last` exiting stopped the task: trapper handled SIGTERM, httpd was killed.
    let (reason, states) = final_states(&msgs);
    assert!(
        reason.contains("Essential container in task exited: last"),
        "{reason}"
    );
    assert_eq!(exit_of(&states, "writer"), Some(0));
    assert_eq!(exit_of(&states, "client"), Some(0));
    assert_eq!(exit_of(&states, "last"), Some(7));
    assert_eq!(exit_of(&states, "trapper"), Some(3));
    assert_eq!(exit_of(&states, "web"), Some(137));
    assert!(states.iter().all(|s| s.status == ContainerStatus::Stopped));
}

#[test]
fn host_stop_sigterm_start_failures_and_unmet_dependencies() {
    let Some(mut g) = start_guest() else {
        return;
    };
    let r = g.root.clone();
    let mut main = container("main", &r, &["sh", "-c", "trap 'echo term-received >&2; exit 0' TERM; echo running; while true; do sleep 0.1; done"]);
    main.essential = true;
    let failing = container("failing", &r, &["sh", "-c", "exit 1"]);
    let mut never = container("never", &r, &["echo", "should-not-run"]);
    never.depends_on = dep("failing", Condition::Success);
    let missing = container("missing", &r, &["/no/such/binary"]);
    let mut ghost = container("ghost", &r, &["true"]);
    ghost.user = Some("ghost".into());
    let mut ro = container(
        "ro",
        &r,
        &["sh", "-c", "touch /x 2>/dev/null || echo read-only-root"],
    );
    ro.readonly_root_filesystem = true;
    let mut sick = container("sick", &r, &["sh", "-c", "while true; do sleep 0.1; done"]);
    sick.stop_timeout = Some(1);
    sick.health_check = Some(HealthCheck {
        command: vec!["CMD".into(), "false".into()],
        retries: Some(1),
        ..Default::default()
    });
    let task = TaskSpec {
        task_arn: "t2".into(),
        containers: vec![main, failing, never, missing, ghost, ro, sick],
        ..Default::default()
    };
    // Stop once main runs and every other container has settled.
    let settled = |msgs: &[GuestMessage]| {
        let stopped = |n: &str| {
            msgs.iter().any(|m| matches!(m, GuestMessage::ContainerStateChange { container, status: ContainerStatus::Stopped, .. } if container == n))
        };
        let sick = msgs.iter().any(|m| matches!(m, GuestMessage::HealthChange { container, status: HealthStatus::Unhealthy, .. } if container == "sick"));
        logs(msgs, "main", LogStream::Stdout) == ["running"]
            && sick
            && ["failing", "never", "missing", "ghost", "ro"]
                .iter()
                .all(|n| stopped(n))
    };
    let msgs = run_task(&mut g, &task, Some(&settled));

    let (reason, states) = final_states(&msgs);
    assert_eq!(reason, "test says stop");
    assert_eq!(exit_of(&states, "main"), Some(0), "{states:?}");
    assert_eq!(
        logs(&msgs, "main", LogStream::Stderr),
        vec!["term-received"]
    );
    assert_eq!(exit_of(&states, "failing"), Some(1));
    let reason_of = |n: &str| {
        states
            .iter()
            .find(|s| s.name == n)
            .unwrap()
            .reason
            .clone()
            .unwrap_or_default()
    };
    assert!(
        reason_of("never").contains("DependencyConditionNotMet"),
        "{states:?}"
    );
    assert!(logs(&msgs, "never", LogStream::Stdout).is_empty());
    assert!(
        reason_of("missing").contains("CannotStartContainerError")
            && reason_of("missing").contains("/no/such/binary"),
        "{states:?}"
    );
    assert!(
        reason_of("ghost").contains("unable to find user ghost"),
        "{states:?}"
    );
    assert_eq!(logs(&msgs, "ro", LogStream::Stdout), vec!["read-only-root"]);
    // sick ignores SIGTERM (PID 1 without a handler): SIGKILL after its 1 s stopTimeout.
    assert_eq!(exit_of(&states, "sick"), Some(137), "{states:?}");
}

#[test]
fn invalid_spec_is_reported_and_the_guest_ends_cleanly() {
    let Some(mut g) = start_guest() else {
        return;
    };
    let r = g.root.clone();
    let mut a = container("a", &r, &["true"]);
    a.depends_on = dep("b", Condition::Start);
    let mut b = container("b", &r, &["true"]);
    b.depends_on = dep("a", Condition::Start);
    b.essential = true;
    let task = TaskSpec {
        task_arn: "t3".into(),
        containers: vec![a, b],
        ..Default::default()
    };
    let mut conn = g.listener.accept(Duration::from_secs(30)).unwrap();
    conn.run_task(&task).unwrap();
    match conn.recv().unwrap() {
        GuestMessage::Error {
            message,
            fatal: true,
        } => assert!(message.contains("cycle"), "{message}"),
        other => panic!("expected a fatal error, got {other:?}"),
    }
    assert!(matches!(
        conn.recv().unwrap(),
        GuestMessage::TaskStopped { .. }
    ));
    assert!(matches!(conn.recv(), Err(ProtoError::Closed)));
    let st = g.child.wait().unwrap();
    assert!(!st.success(), "a refused task is a failed session");
}

#[test]
fn eni_addresses_routes_and_dns_from_the_spec() {
    let Some(mut g) = start_guest_with("ip link add eni0 address 02:00:0a:00:01:05 type veth peer name peer0 && ip link set peer0 up") else {
        return;
    };
    let r = g.root.clone();
    let mut show = container("show", &r, &["sh", "-c", "ip -4 addr show eni0; ip -6 addr show eni0; ip route; ip link show eni0; cat /etc/resolv.conf"]);
    show.essential = true;
    let task = TaskSpec {
        task_arn: "t4".into(),
        interfaces: vec![NetInterface {
            mac: Some("02:00:0A:00:01:05".into()),
            addresses: vec!["10.0.1.5/24".into(), "fd00:1::5/64".into()],
            gateway: Some("10.0.1.1".into()),
            routes: vec![
                RouteSpec {
                    destination: "169.254.170.2/32".into(),
                    via: Some("10.0.1.1".into()),
                },
                RouteSpec {
                    destination: "10.9.0.0/16".into(),
                    via: None,
                },
            ],
            mtu: Some(9000),
            ..Default::default()
        }],
        dns: Dns {
            nameservers: vec!["10.0.0.2".into()],
            search: vec!["ec2.internal".into()],
        },
        containers: vec![show],
        ..Default::default()
    };
    let msgs = run_task(&mut g, &task, None);
    let out = logs(&msgs, "show", LogStream::Stdout).join("\n");
    for want in [
        "inet 10.0.1.5/24",
        "inet6 fd00:1::5/64",
        "default via 10.0.1.1 dev eni0",
        "169.254.170.2 via 10.0.1.1 dev eni0",
        "10.9.0.0/16 dev eni0",
        "mtu 9000",
        "nameserver 10.0.0.2",
        "search ec2.internal",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(exit_of(&final_states(&msgs).1, "show"), Some(0));
}

#[test]
fn missing_interface_is_a_fatal_error() {
    let Some(mut g) = start_guest() else {
        return;
    };
    let r = g.root.clone();
    let mut c = container("c", &r, &["true"]);
    c.essential = true;
    let task = TaskSpec {
        task_arn: "t5".into(),
        interfaces: vec![NetInterface {
            mac: Some("02:00:00:00:00:99".into()),
            addresses: vec!["10.0.0.9/24".into()],
            ..Default::default()
        }],
        containers: vec![c],
        ..Default::default()
    };
    let msgs = run_task_expect_failure(&mut g, &task);
    assert!(matches!(&msgs[0], GuestMessage::TaskAccepted { .. }));
    assert!(
        matches!(&msgs[1], GuestMessage::Error { message, fatal: true } if message.contains("no network interface with 02:00:00:00:00:99")),
        "{msgs:?}"
    );
    assert!(matches!(&msgs[2], GuestMessage::TaskStopped { .. }));
}

fn run_task_expect_failure(g: &mut Guest, task: &TaskSpec) -> Vec<GuestMessage> {
    let mut conn = g.listener.accept(Duration::from_secs(30)).unwrap();
    conn.run_task(task).unwrap();
    let mut msgs = Vec::new();
    loop {
        match conn.recv() {
            Ok(m) => msgs.push(m),
            Err(ProtoError::Closed) => break,
            Err(e) => panic!("{e}: {msgs:?}"),
        }
    }
    assert!(!g.child.wait().unwrap().success());
    msgs
}
