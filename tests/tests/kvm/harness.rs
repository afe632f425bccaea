//! The harness itself: scenarios run on a KVM host and report status and output.

use super::common::{expect, harness, run};
use kvm_tests::Environment;
use std::time::Instant;

#[test]
fn scenario_status_and_output_come_back() {
    let o = run("echo to-stdout; echo to-stderr >&2; exit 3", 60);
    assert_eq!(o.status, 3, "exit status: {o:?}");
    expect(&o, "to-stdout");
    expect(&o, "to-stderr");
}

#[test]
fn scenarios_get_kvm_the_payload_and_a_scratch_directory() {
    let o = run(
        "set -e\n\
         test -c /dev/kvm && echo kvm-ok\n\
         test -s \"$PAYLOAD/guest/vmlinux\" && echo kernel-ok\n\
         test \"$(pwd)\" = \"$SCRATCH\" && echo scratch-ok\n\
         touch \"$SCRATCH/file\" && echo writable-ok\n",
        60,
    );
    assert_eq!(o.status, 0, "{o:?}");
    for what in ["kvm-ok", "kernel-ok", "scratch-ok", "writable-ok"] {
        expect(&o, what);
    }
    if harness().environment() == Environment::Nested {
        let o = run(
            "grep -w kvm_amd /proc/modules && cat /sys/module/kvm_amd/parameters/nested",
            60,
        );
        assert_eq!(
            o.status, 0,
            "kvm_amd is not loaded in the nested host: {o:?}"
        );
        assert!(
            o.output.trim_end().ends_with('1'),
            "nested SVM is off: {o:?}"
        );
    }
}

#[test]
fn a_scenario_that_overruns_its_timeout_is_killed() {
    let started = Instant::now();
    let o = run("echo started; sleep 600; echo not-reached", 5);
    assert_ne!(o.status, 0, "{o:?}");
    expect(&o, "started");
    assert!(!o.output.contains("not-reached"), "{o:?}");
    assert!(
        started.elapsed().as_secs() < 120,
        "the scenario was not killed at its timeout"
    );
}

#[test]
fn concurrent_scenarios_keep_their_own_status_and_output() {
    let threads: Vec<_> = (0..6)
        .map(|i| {
            std::thread::spawn(move || {
                // Straight to the harness: `common::run` takes turns.
                let o = harness().run(
                    &format!("echo begin-{i}; sleep 1; echo end-{i}; exit {i}"),
                    std::time::Duration::from_secs(120),
                );
                (i, o)
            })
        })
        .collect();
    for t in threads {
        let (i, o) = t.join().expect("scenario thread");
        assert_eq!(o.status, i, "{o:?}");
        assert_eq!(o.output, format!("begin-{i}\nend-{i}\n"), "{o:?}");
    }
}

#[test]
fn scenarios_reach_services_on_this_machine_at_outer_addr() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local addr").port();
    let token = format!("outer-{}", std::process::id());
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut got = String::new();
        std::io::Read::read_to_string(&mut conn, &mut got).expect("read");
        got
    });
    let o = run(
        &format!("echo {token} | socat -t 5 - TCP:\"$OUTER_ADDR\":{port} && echo sent"),
        120,
    );
    assert_eq!(o.status, 0, "{o:?}");
    expect(&o, "sent");
    let got = server.join().expect("server thread");
    assert_eq!(got.trim(), token);
}
