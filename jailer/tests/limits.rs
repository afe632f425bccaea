//! Limits the kernel enforces on the jailed vmm: memory (cgroup), file size (rlimit),
//! cpuset.

mod common;

use std::os::unix::process::ExitStatusExt;

use common::*;
use jailer::CgroupVersion;

#[test]
fn memory_limit_is_enforced_by_the_kernel() {
    let version = version_with(&["memory"]).expect("no memory cgroup controller");
    let has_swap = std::fs::read_to_string("/proc/swaps")
        .unwrap_or_default()
        .lines()
        .count()
        > 1;
    let limit = 64u64 << 20;
    let mut cg = match version {
        CgroupVersion::V1 => vec![format!("memory.limit_in_bytes={limit}")],
        CgroupVersion::V2 => vec![format!("memory.max={limit}")],
    };
    if has_swap {
        cg.push(match version {
            CgroupVersion::V1 => format!("memory.memsw.limit_in_bytes={limit}"),
            CgroupVersion::V2 => "memory.swap.max=0".to_string(),
        });
    }
    let mut extra = vec!["--cgroup-version", version_arg(version)];
    for c in &cg {
        extra.extend(["--cgroup", c]);
    }

    // Within the limit: runs to completion.
    let ok = TestJail::new("memok");
    let out = ok.run(&extra, &["alloc", "16"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("allocated=16"));

    // Past it: the kernel's OOM killer ends the vmm, and the jailer reports that.
    let over = TestJail::new("memover");
    let out = over.run(&extra, &["alloc", "256"]);
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{}", stdout(&out));
    assert!(!stdout(&out).contains("allocated"));
    let dir = cgroup_dir(version, "memory", &format!("{}/{}", over.parent, over.id));
    match version {
        CgroupVersion::V1 => {
            let failcnt: u64 = std::fs::read_to_string(dir.join("memory.failcnt"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert!(failcnt > 0, "the cgroup limit was hit");
        }
        CgroupVersion::V2 => {
            let events = std::fs::read_to_string(dir.join("memory.events")).unwrap();
            assert!(
                events
                    .lines()
                    .any(|l| l.starts_with("oom_kill ") && l != "oom_kill 0"),
                "{events}"
            );
        }
    }
}

#[test]
fn file_size_limit_is_enforced() {
    let limit = 1u64 << 20;
    let fsize = format!("fsize={limit}");
    // A plain process is killed by SIGXFSZ.
    let jail = TestJail::new("fsize");
    let out = jail.run(
        &["--resource-limit", &fsize],
        &["write-file", "/run/big", "4194304"],
    );
    assert_eq!(out.status.signal(), Some(libc::SIGXFSZ), "{}", stdout(&out));
    assert_eq!(
        std::fs::metadata(jail.root().join("run/big"))
            .unwrap()
            .len(),
        limit
    );

    // pid 1 of a namespace ignores the signal: its write fails with EFBIG instead.
    let jail = TestJail::new("fsizens");
    let out = jail.run(
        &["--new-pid-ns", "--resource-limit", &fsize],
        &["write-file", "/run/big", "4194304"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
    assert!(stdout(&out).contains("File too large"), "{}", stdout(&out));
    assert_eq!(
        std::fs::metadata(jail.root().join("run/big"))
            .unwrap()
            .len(),
        limit
    );

    // Below the limit all is written.
    let jail = TestJail::new("fsizeok");
    let out = jail.run(
        &["--resource-limit", "fsize=8388608"],
        &["write-file", "/run/big", "4194304"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::metadata(jail.root().join("run/big"))
            .unwrap()
            .len(),
        4 << 20
    );
}

#[test]
fn cpuset_cgroup_is_usable() {
    // A new cpuset cgroup needs cpus and mems (v1: inherited by the jailer) to be joined.
    let version = version_with(&["cpuset"]).expect("no cpuset controller");
    let jail = TestJail::new("cpuset");
    let out = jail.run(
        &[
            "--cgroup-version",
            version_arg(version),
            "--cgroup",
            "cpuset.cpus=0",
        ],
        &["exit", "0"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = cgroup_dir(version, "cpuset", &format!("{}/{}", jail.parent, jail.id));
    assert_eq!(
        std::fs::read_to_string(dir.join("cpuset.cpus"))
            .unwrap()
            .trim(),
        "0"
    );
    if version == CgroupVersion::V1 {
        let mems = std::fs::read_to_string(dir.join("cpuset.mems")).unwrap();
        assert!(!mems.trim().is_empty(), "mems inherited");
    }
}
