//! Shared helpers of the jailer's integration tests: a static build of jail-probe, and a
//! guard that owns one test jail (unique id, base dir, parent cgroup, netns) and removes
//! all of it on drop, also when the test fails.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use jailer::cgroups::{cgroup_v1_mounts, cgroup_v2_mount};
use jailer::CgroupVersion;

pub const UID: u32 = 41234;
pub const GID: u32 = 41235;
pub use jailer::test_utils::EXEC_NAME;

pub fn jailer_bin() -> &'static str {
    env!("CARGO_BIN_EXE_jailer")
}

/// jail-probe built as a static binary (the jail holds no libraries).
pub fn probe() -> &'static Path {
    jailer::test_utils::jail_probe(Path::new(env!("CARGO_TARGET_TMPDIR")))
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Parsed `key=value` report of jail-probe.
pub type Report = HashMap<String, String>;

pub fn parse_report(text: &str) -> Report {
    let mut r = Report::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            r.entry(k.to_string())
                .and_modify(|old: &mut String| {
                    old.push(';');
                    old.push_str(v);
                })
                .or_insert_with(|| v.to_string());
        }
    }
    r
}

/// Every cgroup hierarchy root of this machine (v1 mounts and the v2 mount).
pub fn hierarchy_roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = cgroup_v1_mounts()
        .unwrap()
        .into_iter()
        .map(|m| m.point)
        .collect();
    roots.extend(cgroup_v2_mount().unwrap().map(|m| m.point));
    roots
}

pub fn v1_has(ctrl: &str) -> bool {
    cgroup_v1_mounts()
        .unwrap()
        .iter()
        .any(|m| m.controllers.iter().any(|c| c == ctrl))
}

pub fn v2_controllers() -> Vec<String> {
    let Some(m) = cgroup_v2_mount().unwrap() else {
        return Vec::new();
    };
    std::fs::read_to_string(m.point.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The cgroup version that offers all `ctrls` here (v1 preferred), if any.
pub fn version_with(ctrls: &[&str]) -> Option<CgroupVersion> {
    if ctrls.iter().all(|c| v1_has(c)) {
        return Some(CgroupVersion::V1);
    }
    let v2 = v2_controllers();
    if ctrls.iter().all(|c| v2.iter().any(|x| x == c)) {
        return Some(CgroupVersion::V2);
    }
    None
}

pub fn version_arg(v: CgroupVersion) -> &'static str {
    match v {
        CgroupVersion::V1 => "1",
        CgroupVersion::V2 => "2",
    }
}

/// The directory of `ctrl`'s hierarchy for cgroup `rel`.
pub fn cgroup_dir(v: CgroupVersion, ctrl: &str, rel: &str) -> PathBuf {
    match v {
        CgroupVersion::V1 => cgroup_v1_mounts()
            .unwrap()
            .into_iter()
            .find(|m| m.controllers.iter().any(|c| c == ctrl))
            .expect("v1 controller mounted")
            .point
            .join(rel),
        CgroupVersion::V2 => cgroup_v2_mount()
            .unwrap()
            .expect("cgroup2 mounted")
            .point
            .join(rel),
    }
}

/// One test jail and everything it may leave behind.
pub struct TestJail {
    pub id: String,
    pub base: PathBuf,
    pub parent: String,
    pub netns: Option<String>,
    pub children: Vec<Child>,
}

impl TestJail {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        TestJail {
            id: format!("{tag}-{pid}-{n}"),
            base: Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("jails-{pid}-{n}")),
            parent: format!("jailer-test-{pid}-{n}"),
            netns: None,
            children: Vec::new(),
        }
    }

    /// Creates a network namespace owned by this jail guard; returns its path.
    pub fn add_netns(&mut self) -> String {
        let name = format!("jt-{}", self.id);
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip netns add");
        assert!(st.success(), "ip netns add {name}");
        self.netns = Some(name.clone());
        format!("/var/run/netns/{name}")
    }

    pub fn jail_dir(&self) -> PathBuf {
        self.base.join(EXEC_NAME).join(&self.id)
    }

    pub fn root(&self) -> PathBuf {
        self.jail_dir().join("root")
    }

    /// `jailer` with the common flags, `extra` flags, then `-- probe_args`.
    pub fn command(&self, exec: &Path, extra: &[&str], probe_args: &[&str]) -> Command {
        let mut c = Command::new(jailer_bin());
        c.args(["--id", &self.id, "--exec-file"])
            .arg(exec)
            .args([
                "--uid",
                &UID.to_string(),
                "--gid",
                &GID.to_string(),
                "--chroot-base-dir",
            ])
            .arg(&self.base)
            .args(["--parent-cgroup", &self.parent])
            .args(extra)
            .arg("--")
            .args(probe_args);
        c
    }

    pub fn run(&self, extra: &[&str], probe_args: &[&str]) -> Output {
        self.command(probe(), extra, probe_args)
            .stdin(Stdio::null())
            .output()
            .expect("run jailer")
    }

    /// Starts the probe in `report --wait` mode and returns its report once written; the
    /// probe keeps running until [`TestJail::finish`].
    pub fn start_waiting(&mut self, extra: &[&str]) -> Report {
        let host_pid = std::process::id().to_string();
        let mut child = self
            .command(
                probe(),
                extra,
                &["report", "--host-pid", &host_pid, "--wait"],
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn jailer");
        let stdout = child.stdout.take().unwrap();
        self.children.push(child);
        let mut text = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let end = line == "end";
            text.push_str(&line);
            text.push('\n');
            if end {
                break;
            }
        }
        assert!(text.ends_with("end\n"), "probe report incomplete: {text}");
        parse_report(&text)
    }

    /// Lets the waiting probe exit; returns the jailer's exit status.
    pub fn finish(&mut self) -> std::process::ExitStatus {
        let mut child = self.children.pop().expect("a running jailer");
        drop(child.stdin.take());
        child.wait().unwrap()
    }

    pub fn cleanup(&self, extra: &[&str]) -> Output {
        Command::new(jailer_bin())
            .args(["--cleanup", "--id", &self.id, "--chroot-base-dir"])
            .arg(&self.base)
            .args(extra)
            .output()
            .expect("run jailer --cleanup")
    }

    /// The pid (host view) written by the jailer into the jail.
    pub fn vmm_pid(&self) -> u32 {
        let f = self.root().join(format!("{EXEC_NAME}.pid"));
        std::fs::read_to_string(&f).unwrap().trim().parse().unwrap()
    }

    /// Whether anything of this jail is left: base dir, jail cgroups, parent cgroups.
    pub fn leftovers(&self) -> Vec<PathBuf> {
        let mut left: Vec<PathBuf> = hierarchy_roots()
            .into_iter()
            .map(|r| r.join(&self.parent))
            .filter(|p| p.exists())
            .collect();
        if self.base.exists() {
            left.push(self.base.clone());
        }
        left
    }
}

impl Drop for TestJail {
    fn drop(&mut self) {
        for mut c in self.children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A killed probe may take a moment to leave its cgroups.
        for _ in 0..40 {
            if self
                .cleanup(&["--parent-cgroup", &self.parent.clone()])
                .status
                .success()
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        for root in hierarchy_roots() {
            let own = root.join(&self.parent).join(&self.id);
            let _ = std::fs::remove_dir(&own);
            let _ = std::fs::remove_dir(root.join(&self.parent));
        }
        let _ = std::fs::remove_dir_all(&self.base);
        if let Some(ns) = &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// stderr of an output, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
