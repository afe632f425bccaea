//! The jailer run for real (as root) with jail-probe as the exec file: what the jailed
//! process can see and do, its cgroups and limits, exit status, daemon mode, cleanup.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;
use jailer::{task_limits, CgroupVersion};

fn proc_status(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap()
}

fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .unwrap_or_else(|| panic!("{key} missing in /proc/PID/status"))
        .trim()
}

/// Checks the probe's own view: identity, capabilities, fds, privilege, root listing.
fn assert_confined(r: &Report) {
    let uid = format!("{UID},{UID},{UID}");
    let gid = format!("{GID},{GID},{GID}");
    assert_eq!(r["uid"], uid);
    assert_eq!(r["gid"], gid);
    assert_eq!(r["groups"], "");
    assert_eq!(
        r["root"], "dev,jail-probe,jail-probe.pid,run",
        "/ is the jail"
    );
    assert!(
        !r.contains_key("visible"),
        "host paths visible: {:?}",
        r.get("visible")
    );
    for set in ["cap_eff", "cap_prm", "cap_inh", "cap_bnd", "cap_amb"] {
        assert_eq!(r[set], "0", "{set}");
    }
    assert_eq!(r["no_new_privs"], "1");
    assert_eq!(r["fds"], "0,1,2");
    assert_eq!(r["setuid0"], "EPERM");
    assert_eq!(r["setgid0"], "EPERM");
    assert_eq!(r["write_root"], "denied");
    if Path::new("/dev/kvm").exists() {
        assert_eq!(r["dev_kvm"], "ok", "the jail's /dev/kvm belongs to the vmm");
    }
}

#[test]
fn jailed_vmm_sees_only_its_jail_and_holds_nothing() {
    let version =
        version_with(&["cpu", "memory"]).expect("no cgroup version offers cpu and memory");
    let mut jail = TestJail::new("conf");
    let netns = jail.add_netns();
    let limits = task_limits(version, 256, 512);
    let mut extra = vec![
        "--new-pid-ns",
        "--netns",
        &netns,
        "--cgroup-version",
        version_arg(version),
    ];
    for l in &limits {
        extra.extend(["--cgroup", l]);
    }
    let r = jail.start_waiting(&extra);
    assert_confined(&r);
    assert_eq!(r["pid"], "1", "pid 1 of a new pid namespace");
    assert_eq!(r["kill_host"], "ESRCH", "host processes are not visible");
    assert_eq!(r["nofile"], "2048", "default no-file limit");
    let passed: Vec<&str> = r["jailer_args"].split(' ').collect();
    assert_eq!(passed.len(), 3, "{passed:?}");
    assert_eq!(passed[0], format!("--id={}", jail.id));
    assert!(passed[1]
        .strip_prefix("--start-time-us=")
        .is_some_and(|v| v.parse::<u64>().is_ok()));
    assert!(passed[2]
        .strip_prefix("--start-time-cpu-us=")
        .is_some_and(|v| v.parse::<u64>().is_ok()));

    // The same from the host's side.
    let pid = jail.vmm_pid();
    let st = proc_status(pid);
    assert_eq!(
        status_field(&st, "Uid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        vec![UID.to_string(); 4]
    );
    assert_eq!(
        status_field(&st, "Gid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        vec![GID.to_string(); 4]
    );
    for f in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(&st, f), "0000000000000000", "{f}");
    }
    assert_eq!(status_field(&st, "NoNewPrivs"), "1");
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    fds.sort();
    assert_eq!(fds, vec![0, 1, 2]);
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    assert_eq!(
        mounts.lines().count(),
        1,
        "only the jail root is mounted: {mounts}"
    );
    let ns_ino = std::fs::metadata(&netns).unwrap().ino();
    let net = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(
        net.to_str().unwrap(),
        format!("net:[{ns_ino}]"),
        "joined the netns"
    );

    // Its cgroups: membership and the task's limits.
    let rel = format!("{}/{}", jail.parent, jail.id);
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let read = |ctrl: &str, file: &str| {
        std::fs::read_to_string(cgroup_dir(version, ctrl, &rel).join(file))
            .unwrap()
            .trim()
            .to_string()
    };
    match version {
        CgroupVersion::V1 => {
            for ctrl in ["cpu", "memory"] {
                assert!(
                    cg.lines().any(|l| l
                        .split(':')
                        .nth(1)
                        .is_some_and(|c| c.split(',').any(|x| x == ctrl))
                        && l.ends_with(&format!(":/{rel}"))),
                    "{ctrl} cgroup of the vmm: {cg}"
                );
            }
            assert_eq!(read("cpu", "cpu.cfs_quota_us"), "25000");
            assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");
            assert_eq!(read("memory", "memory.limit_in_bytes"), "536870912");
        }
        CgroupVersion::V2 => {
            assert!(cg.lines().any(|l| l == format!("0::/{rel}")), "{cg}");
            assert_eq!(read("cpu", "cpu.max"), "25000 100000");
            assert_eq!(read("memory", "memory.max"), "536870912");
        }
    }
    for ctrl in ["cpu", "memory"] {
        let procs = read(ctrl, "cgroup.procs");
        assert_eq!(procs, pid.to_string(), "{ctrl} cgroup.procs");
    }

    let status = jail.finish();
    assert_eq!(status.code(), Some(0));

    // Cleanup removes the jail and its cgroups, and is idempotent.
    let out = jail.cleanup(&["--exec-file", EXEC_NAME, "--parent-cgroup", &jail.parent]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!jail.jail_dir().exists());
    for ctrl in ["cpu", "memory"] {
        assert!(
            !cgroup_dir(version, ctrl, &rel).exists(),
            "{ctrl} cgroup removed"
        );
    }
    let again = jail.cleanup(&["--exec-file", EXEC_NAME, "--parent-cgroup", &jail.parent]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), "", "nothing left to remove");
}

#[test]
fn without_pid_ns_host_processes_exist_but_are_out_of_reach() {
    let jail = TestJail::new("nopidns");
    let host_pid = std::process::id().to_string();
    let out = jail.run(
        &["--resource-limit", "no-file=64"],
        &["report", "--host-pid", &host_pid],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r = parse_report(&stdout(&out));
    assert_confined(&r);
    assert_ne!(r["pid"], "1");
    assert_eq!(
        r["kill_host"], "EPERM",
        "a root process exists but may not be signalled"
    );
    assert_eq!(r["nofile"], "64");
}

#[test]
fn exit_status_of_the_vmm_is_the_jailers() {
    for pidns in [false, true] {
        let jail = TestJail::new("exit");
        let extra: &[&str] = if pidns { &["--new-pid-ns"] } else { &[] };
        let out = jail.run(extra, &["exit", "7"]);
        assert_eq!(
            out.status.code(),
            Some(7),
            "pidns={pidns}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn daemonize_detaches_with_stdio_on_dev_null() {
    let jail = TestJail::new("daemon");
    let out = jail.run(&["--daemonize"], &["report", "--out", "/run/report"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let file = jail.root().join("run/report");
    let mut text = String::new();
    for _ in 0..200 {
        text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.ends_with("end\n") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = parse_report(&text);
    assert_confined(&r);
    assert_eq!(r["sid"], r["pid"], "session leader");
    assert_eq!(r["stdin_rdev"], "1:3", "stdin is /dev/null");
    assert_eq!(r["pid"], jail.vmm_pid().to_string());
}

#[test]
fn cgroup_v2_hierarchy_is_joined() {
    let ctrls = v2_controllers();
    let setting = if ctrls.iter().any(|c| c == "memory") {
        ("memory", "memory.max", "268435456")
    } else if ctrls.iter().any(|c| c == "pids") {
        ("pids", "pids.max", "64")
    } else if ctrls.iter().any(|c| c == "hugetlb")
        && Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists()
    {
        ("hugetlb", "hugetlb.2MB.max", "0")
    } else {
        panic!("the cgroup2 hierarchy offers none of memory, pids, hugetlb: {ctrls:?}");
    };
    let mut jail = TestJail::new("v2");
    let arg = format!("{}={}", setting.1, setting.2);
    jail.start_waiting(&["--cgroup-version", "2", "--cgroup", &arg]);
    let pid = jail.vmm_pid();
    let rel = format!("{}/{}", jail.parent, jail.id);
    let dir = cgroup_dir(CgroupVersion::V2, setting.0, &rel);
    assert_eq!(
        std::fs::read_to_string(dir.join(setting.1)).unwrap().trim(),
        setting.2
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap()
            .trim(),
        pid.to_string()
    );
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.lines().any(|l| l == format!("0::/{rel}")), "{cg}");
    assert_eq!(jail.finish().code(), Some(0));
    let out = jail.cleanup(&["--cgroup-version", "2", "--parent-cgroup", &jail.parent]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!dir.exists());
}

fn spawn_waiting_for_signal(jail: &TestJail, extra: &[&str]) -> std::process::Child {
    use std::io::BufRead;
    let mut child = jail
        .command(probe(), extra, &["wait-signal"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    child
}

#[test]
fn sigterm_to_the_jailer_reaches_the_vmm() {
    for pidns in [false, true] {
        let jail = TestJail::new("term");
        let extra: &[&str] = if pidns { &["--new-pid-ns"] } else { &[] };
        let mut child = spawn_waiting_for_signal(&jail, extra);
        // SAFETY: sending SIGTERM to the jailer this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(42),
            "pidns={pidns}: the vmm's handler ran"
        );
    }
}

#[test]
fn the_vmm_dies_with_its_jailer() {
    for pidns in [false, true] {
        let jail = TestJail::new("orphan");
        let extra: &[&str] = if pidns { &["--new-pid-ns"] } else { &[] };
        let mut child = spawn_waiting_for_signal(&jail, extra);
        let vmm = jail.vmm_pid();
        child.kill().unwrap();
        child.wait().unwrap();
        let gone = (0..100).any(|_| {
            let st = std::fs::read_to_string(format!("/proc/{vmm}/status")).unwrap_or_default();
            let dead = st.is_empty() || st.contains("State:\tZ");
            if !dead {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            dead
        });
        assert!(gone, "pidns={pidns}: vmm {vmm} survived its jailer");
    }
}

#[test]
fn without_pivot_root_the_jail_is_moved_over_root() {
    // The fallback used when / is an initramfs (the nested KVM host): same confinement.
    let mut jail = TestJail::new("nopivot");
    let r = jail.start_waiting(&["--no-pivot", "--new-pid-ns"]);
    assert_confined(&r);
    let pid = jail.vmm_pid();
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let points: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(4)).collect();
    assert_eq!(points, vec!["/"], "only the jail is reachable: {mounts}");
    assert_eq!(jail.finish().code(), Some(0));
}
