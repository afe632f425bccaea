//! Failures: bad arguments are refused before anything is created; a step that fails
//! later (cgroup, netns, exec) names the step and path, and everything done is undone.

mod common;

use std::path::Path;

use common::*;

fn memory_setting() -> (String, String) {
    let v = version_with(&["memory"]).expect("no memory cgroup controller");
    let setting = match v {
        jailer::CgroupVersion::V1 => "memory.limit_in_bytes=268435456",
        jailer::CgroupVersion::V2 => "memory.max=268435456",
    };
    (version_arg(v).to_string(), setting.to_string())
}

#[test]
fn bad_arguments_are_refused_before_anything_is_created() {
    let long_id = "a".repeat(65);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--id".into(), "../etc".into()],
            "validate: --id \"../etc\"",
        ),
        (vec!["--id".into(), long_id.clone()], "validate: --id"),
        (vec!["--id".into(), "a_b".into()], "validate: --id \"a_b\""),
        (
            vec!["--exec-file".into(), "/nonexistent/vmm".into()],
            "validate: /nonexistent/vmm",
        ),
        (
            vec!["--exec-file".into(), "/etc".into()],
            "not a regular file",
        ),
        (
            vec!["--chroot-base-dir".into(), "relative/dir".into()],
            "validate: relative/dir",
        ),
        (
            vec!["--netns".into(), "/var/run/netns/does-not-exist-jt".into()],
            "validate: /var/run/netns/does-not-exist-jt",
        ),
        (
            vec!["--cgroup".into(), "nodot=1".into()],
            "validate: --cgroup \"nodot=1\"",
        ),
        (
            vec!["--cgroup".into(), "cgroup.procs=1".into()],
            "validate: --cgroup",
        ),
        (
            vec!["--resource-limit".into(), "cpu=1".into()],
            "validate: --resource-limit \"cpu=1\"",
        ),
        (
            vec!["--parent-cgroup".into(), "../up".into()],
            "validate: --parent-cgroup \"../up\"",
        ),
        (
            vec!["--uid".into(), "4294967295".into()],
            "validate: --uid 4294967295",
        ),
    ];
    for (args, expect) in cases {
        let jail = TestJail::new("bad");
        // Later flags override the defaults of `command`.
        let mut c = std::process::Command::new(jailer_bin());
        let mut flags = vec![
            "--id".to_string(),
            jail.id.clone(),
            "--exec-file".into(),
            probe().display().to_string(),
            "--uid".into(),
            UID.to_string(),
            "--gid".into(),
            GID.to_string(),
            "--chroot-base-dir".into(),
            jail.base.display().to_string(),
            "--parent-cgroup".into(),
            jail.parent.clone(),
        ];
        for pair in args.chunks(2) {
            match flags.iter().position(|f| *f == pair[0]) {
                Some(i)
                    if pair[0] != "--cgroup"
                        && pair[0] != "--resource-limit"
                        && pair[0] != "--netns" =>
                {
                    flags[i + 1] = pair[1].clone()
                }
                _ => flags.extend(pair.iter().cloned()),
            }
        }
        let out = c.args(&flags).args(["--", "exit", "0"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(expect),
            "{args:?}: expected {expect:?} in {err:?}"
        );
        assert_eq!(
            jail.leftovers(),
            Vec::<std::path::PathBuf>::new(),
            "{args:?} left something"
        );
    }
}

#[test]
fn a_late_failure_names_its_step_and_undoes_everything() {
    let (version, mem) = memory_setting();
    let not_a_netns = probe().display().to_string();
    let dynamic_exec = env!("CARGO_BIN_EXE_jail-probe");
    let cases: Vec<(Vec<&str>, &Path, String)> = vec![
        // Cgroups are created before the jail is entered: a bad netns is found in the child.
        (
            vec!["--netns", &not_a_netns, "--new-pid-ns"],
            probe(),
            format!("join netns: {not_a_netns}"),
        ),
        // A dynamically linked exec file finds no loader in the jail: exec fails.
        (
            vec![],
            Path::new(dynamic_exec),
            "exec: /jail-probe".to_string(),
        ),
        // A controller that is not mounted fails the cgroup step.
        (
            vec!["--cgroup", "bogus.max=1"],
            probe(),
            "cgroup: ".to_string(),
        ),
    ];
    for (extra, exec, expect) in cases {
        let jail = TestJail::new("late");
        let mut flags = vec!["--cgroup-version", &version, "--cgroup", &mem];
        flags.extend(extra.iter().copied());
        let out = jail.command(exec, &flags, &["exit", "0"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&expect), "expected {expect:?} in {err:?}");
        assert!(!err.contains("undo:"), "undo had problems: {err}");
        assert_eq!(
            jail.leftovers(),
            Vec::<std::path::PathBuf>::new(),
            "{extra:?} left something"
        );
    }
}

#[test]
fn a_prepared_jail_is_used_its_files_kept_and_a_jail_in_use_refused() {
    // The host put a drive image into the jail beforehand (as Firecracker users do).
    let jail = TestJail::new("prep");
    let disk = jail.root().join("disk.img");
    std::fs::create_dir_all(jail.root()).unwrap();
    std::fs::write(&disk, "keep").unwrap();

    // A late failure undoes only what the jailer made.
    let not_a_netns = probe().display().to_string();
    let out = jail.run(&["--netns", &not_a_netns], &["exit", "0"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let mut left: Vec<String> = std::fs::read_dir(jail.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, vec!["disk.img"], "only the host's file is left");

    // It runs in the prepared jail.
    let out = jail.run(&[], &["report"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = parse_report(&stdout(&out));
    assert_eq!(r["root"], "dev,disk.img,jail-probe,jail-probe.pid,run");

    // Once used (and not cleaned), the id is refused and nothing is touched.
    let out = jail.run(&[], &["exit", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let exec = jail.root().join(EXEC_NAME);
    assert!(
        err.contains(&format!(
            "create jail dir: {}: already exists",
            exec.display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&disk).unwrap(), "keep");
    assert!(exec.exists() && jail.root().join("dev/kvm").exists());
}

#[test]
fn cleanup_refuses_a_running_vmm_then_removes_everything_idempotently() {
    let (version, mem) = memory_setting();
    let mut jail = TestJail::new("clean");
    jail.start_waiting(&["--cgroup-version", &version, "--cgroup", &mem]);
    let rel = format!("{}/{}", jail.parent, jail.id);
    let v = if version == "1" {
        jailer::CgroupVersion::V1
    } else {
        jailer::CgroupVersion::V2
    };
    let cg = cgroup_dir(v, "memory", &rel);

    // Without --exec-file: the jail is found under the base dir.
    let out = jail.cleanup(&["--parent-cgroup", &jail.parent]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cleanup: ") && stderr(&out).contains("still"),
        "{}",
        stderr(&out)
    );
    assert!(
        jail.jail_dir().exists() && cg.exists(),
        "nothing removed while running"
    );

    assert_eq!(jail.finish().code(), Some(0));
    let out = jail.cleanup(&["--parent-cgroup", &jail.parent]);
    assert!(out.status.success(), "{}", stderr(&out));
    let removed = stdout(&out);
    assert!(
        removed.contains(&format!("removed {}", cg.display())),
        "{removed}"
    );
    assert!(
        removed.contains(&format!("removed {}", jail.jail_dir().display())),
        "{removed}"
    );
    assert!(!jail.jail_dir().exists() && !cg.exists());

    // Without cgroups, the pid file tells that the vmm still runs.
    let mut plain = TestJail::new("cleanpid");
    plain.start_waiting(&[]);
    let out = plain.cleanup(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is still running"),
        "{}",
        stderr(&out)
    );
    assert!(plain.jail_dir().exists());
    assert_eq!(plain.finish().code(), Some(0));
    let out = plain.cleanup(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!plain.jail_dir().exists());

    let again = jail.cleanup(&["--parent-cgroup", &jail.parent]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), "");

    let out = std::process::Command::new(jailer_bin())
        .args(["--cleanup", "--id", "../x", "--chroot-base-dir"])
        .arg(&jail.base)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("validate: --id"), "{}", stderr(&out));
}
