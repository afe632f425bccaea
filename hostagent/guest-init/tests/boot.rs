//! The PID 1 path (`guest-init boot`) on this host: guest-init is PID 1 of new PID, mount,
//! network and UTS namespaces (with a tmpfs over /etc so the host's is never touched), does
//! its early mounts, connects over a Unix socket instead of vsock, sets hostname, entropy,
//! network, resolv.conf and storage up from the spec, runs a container, reports, and
//! "powers off": reboot() in a child PID namespace ends that namespace with SIGHUP, which
//! proves the reset path ran. Needs root; skipped otherwise.

use std::os::unix::fs::symlink;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use guest_proto::host::HostListener;
use guest_proto::*;

#[test]
fn boots_as_pid1_runs_the_task_and_resets() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root (namespaces, mounts)");
        return;
    }
    // Not under /tmp or /run: the guest mounts tmpfs there (a checkout under /tmp gets
    // its directory, and the binary it runs, in /var/tmp).
    let base = env!("CARGO_TARGET_TMPDIR");
    let base = if base.starts_with("/tmp/") || base.starts_with("/run/") {
        "/var/tmp"
    } else {
        base
    };
    let dir = tempfile::tempdir_in(base).unwrap();
    let root = dir.path().join("image");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for a in ["sh", "hostname", "cat", "ip", "grep"] {
        symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    let listener = HostListener::bind_path(&dir.path().join("vsock_1024")).unwrap();
    let bin = std::env::var("GUEST_INIT_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_guest-init").to_string());
    // Run a copy from the test directory: a build under /tmp would vanish under the
    // guest's tmpfs.
    let bin_copy = dir.path().join("guest-init");
    std::fs::copy(&bin, &bin_copy).unwrap();
    let bin = bin_copy.display().to_string();
    let mut child = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount",
            "--net",
            "--uts",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
        ])
        .arg("mount -t tmpfs tmpfs /etc && exec \"$0\" boot --no-boot-marker --connect \"$1\"")
        .arg(bin)
        .arg(format!("unix:{}", listener.path().display()))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut conn = listener
        .accept(Duration::from_secs(30))
        .expect("guest connects");
    let task = TaskSpec {
        task_arn: "arn:aws:ecs:local:1:task/c/boot".into(),
        hostname: Some("vm-task".into()),
        interfaces: vec![NetInterface { name: Some("lo".into()), addresses: vec!["127.0.0.1/8".into()], ..Default::default() }],
        dns: Dns { nameservers: vec!["10.0.0.2".into()], search: vec![] },
        entropy_seed: Some("00112233445566778899aabbccddeeff".into()),
        volumes: vec![Volume { name: "v".into() }],
        containers: vec![ContainerSpec {
            name: "app".into(),
            root_device: root.display().to_string(),
            command: vec!["sh".into(), "-c".into(), "hostname; cat /etc/resolv.conf /etc/hostname; ip -4 addr show lo | grep -o 'inet [0-9./]*'; echo x > /v/f && cat /v/f".into()],
            mount_points: vec![MountPoint { source_volume: "v".into(), container_path: "/v".into(), read_only: false }],
            essential: true,
            ..Default::default()
        }],
        ..Default::default()
    };
    conn.run_task(&task).unwrap();
    let mut lines = Vec::new();
    let mut stopped = None;
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    loop {
        match conn.recv() {
            Ok(GuestMessage::Log {
                line,
                stream: LogStream::Stdout,
                ..
            }) => lines.push(line),
            Ok(GuestMessage::TaskStopped { containers, .. }) => stopped = Some(containers),
            Ok(GuestMessage::Error {
                message,
                fatal: true,
            }) => panic!("guest failed: {message}"),
            Ok(_) => {}
            Err(ProtoError::Closed) => break,
            Err(e) => panic!("{e}; lines so far {lines:?}"),
        }
    }
    let st = child.wait().unwrap();
    assert_eq!(
        lines,
        vec![
            "vm-task",
            "nameserver 10.0.0.2",
            "vm-task",
            "inet 127.0.0.1/8",
            "x"
        ]
    );
    let containers = stopped.expect("TaskStopped");
    assert_eq!(containers[0].exit_code, Some(0));
    assert_eq!(
        st.signal(),
        Some(libc::SIGHUP),
        "PID 1 must end through reboot(): {st:?}"
    );
}
