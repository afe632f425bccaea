//! Starting the vmm under the jailer, and `jailer --cleanup`.
//!
//! The jailer is started without `--daemonize`: it stays outside the jail as the vmm's
//! supervisor and the vmm's stdout/stderr (its log and the guest console) go to the
//! task's `console.log`. It runs in its own process group, so it and the vmm outlive the
//! agent (with systemd `KillMode=process`). The vmm's host pid comes from the jailer's
//! root-owned pid file `<root>/<exec-name>.pid`.
//!
//! Child module: `ids`, the pool of per-jail uids/gids (`--jail-uid-range`).

pub mod ids;

use super::process::ProcIdent;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The jailer could not start the vmm, or `jailer --cleanup` failed.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// The console file cannot be opened.
    #[error("{}: {source}", path.display())]
    Console {
        /// `JailSpec::console`.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The jailer cannot be run.
    #[error("{}: {source}", path.display())]
    Spawn {
        /// The jailer binary.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The jailer ended before the vmm ran.
    #[error("jailer exited ({status}): {console}")]
    Exited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of the console file.
        console: String,
    },
    /// The vmm's pid did not appear in time.
    #[error("no vmm pid in {} after {timeout:?}", pid_file.display())]
    NoVmmPid {
        /// The jailer's pid file.
        pid_file: PathBuf,
        /// How long was waited.
        timeout: Duration,
    },
    /// `jailer --cleanup` kept failing.
    #[error("jailer --cleanup --id {id}: {last}")]
    Cleanup {
        /// The jail id.
        id: String,
        /// The last attempt's error output.
        last: String,
    },
}

/// One jailer invocation.
#[derive(Debug, Clone)]
pub struct JailSpec {
    /// The jailer binary.
    pub jailer: PathBuf,
    /// The vmm binary (`--exec-file`).
    pub exec_file: PathBuf,
    /// Jail id (= task id).
    pub id: String,
    /// vmm identity.
    pub uid: u32,
    /// vmm group.
    pub gid: u32,
    /// `--chroot-base-dir`.
    pub chroot_base: PathBuf,
    /// `--netns` (the task's network namespace from netd).
    pub netns: Option<PathBuf>,
    /// `--cgroup-version` (1 or 2).
    pub cgroup_version: u8,
    /// `--parent-cgroup`.
    pub parent_cgroup: String,
    /// `--cgroup FILE=VALUE` settings.
    pub cgroups: Vec<String>,
    /// Arguments after `--`.
    pub vmm_args: Vec<String>,
    /// The vmm's stdout/stderr go here (appended).
    pub console: PathBuf,
}

impl JailSpec {
    /// The jailer's arguments.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--id".to_string(),
            self.id.clone(),
            "--exec-file".into(),
            self.exec_file.display().to_string(),
            "--uid".into(),
            self.uid.to_string(),
            "--gid".into(),
            self.gid.to_string(),
            "--chroot-base-dir".into(),
            self.chroot_base.display().to_string(),
            "--cgroup-version".into(),
            self.cgroup_version.to_string(),
            "--parent-cgroup".into(),
            self.parent_cgroup.clone(),
            "--new-pid-ns".into(),
        ];
        if let Some(n) = &self.netns {
            a.push("--netns".into());
            a.push(n.display().to_string());
        }
        for c in &self.cgroups {
            a.push("--cgroup".into());
            a.push(c.clone());
        }
        a.push("--".into());
        a.extend(self.vmm_args.iter().cloned());
        a
    }

    /// The exec file's name (the jailer names the jail directory and pid file after it).
    fn exec_name(&self) -> String {
        self.exec_file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `<base>/<exec-name>/<id>/root`.
    pub fn root(&self) -> PathBuf {
        self.chroot_base
            .join(self.exec_name())
            .join(&self.id)
            .join("root")
    }

    fn pid_file(&self) -> PathBuf {
        self.root().join(format!("{}.pid", self.exec_name()))
    }
}

/// A started jail: the jailer (our child; reaped by tokio when dropped) and the vmm.
#[derive(Debug)]
pub struct Started {
    /// The jailer process.
    pub jailer: tokio::process::Child,
    /// The vmm.
    pub vmm: ProcIdent,
}

/// The last `n` bytes of a file, lossily decoded (for error messages).
pub fn tail(path: &Path, n: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(n)));
    let mut buf = Vec::new();
    let _ = f.take(n).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).trim().to_string()
}

/// Starts the jailer and waits (up to `timeout`) for the vmm's pid.
pub async fn start(spec: &JailSpec, timeout: Duration) -> Result<Started, JailError> {
    let console_err = |source| JailError::Console {
        path: spec.console.clone(),
        source,
    };
    let console = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.console)
        .map_err(console_err)?;
    let console2 = console.try_clone().map_err(console_err)?;
    let mut cmd = std::process::Command::new(&spec.jailer);
    cmd.args(spec.args())
        .stdin(Stdio::null())
        .stdout(console)
        .stderr(console2)
        .process_group(0);
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(|source| JailError::Spawn {
            path: spec.jailer.clone(),
            source,
        })?;
    let pid_file = spec.pid_file();
    // The pid file names the jailer's child before its exec: the vmm runs once that
    // process's command name is the exec file's (a failed exec ends the jailer instead).
    let exec_comm: String = spec
        .exec_file
        .file_name()
        .map(|n| n.to_string_lossy().chars().take(15).collect())
        .unwrap_or_default();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim_end() == exec_comm {
                    if let Ok(p) = ProcIdent::of(pid) {
                        return Ok(Started {
                            jailer: child,
                            vmm: p,
                        });
                    }
                }
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(JailError::Exited {
                status,
                console: tail(&spec.console, 600),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(JailError::NoVmmPid { pid_file, timeout });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `jailer --cleanup` for the jail `id` (idempotent). It refuses while the vmm still
/// runs: the caller kills it first; a vmm that is still exiting is waited for.
pub async fn cleanup(
    jailer: &Path,
    id: &str,
    exec_name: &str,
    chroot_base: &Path,
    cgroup_version: u8,
    parent_cgroup: &str,
) -> Result<(), JailError> {
    let mut last = String::new();
    for attempt in 0..10 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let out = tokio::process::Command::new(jailer)
            .args(["--cleanup", "--id", id, "--exec-file", exec_name])
            .arg("--chroot-base-dir")
            .arg(chroot_base)
            .args(["--cgroup-version", &cgroup_version.to_string()])
            .args(["--parent-cgroup", parent_cgroup])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = match tokio::time::timeout(Duration::from_secs(30), out).await {
            Ok(r) => r.map_err(|source| JailError::Spawn {
                path: jailer.to_path_buf(),
                source,
            })?,
            Err(_) => {
                last = "jailer --cleanup did not finish within 30 s".into();
                continue;
            }
        };
        if out.status.success() {
            return Ok(());
        }
        last = String::from_utf8_lossy(&out.stderr).trim().to_string();
    }
    Err(JailError::Cleanup {
        id: id.to_string(),
        last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_follow_the_jailer_flags() {
        let s = JailSpec {
            jailer: "/usr/local/bin/jailer".into(),
            exec_file: "/usr/local/bin/vmm".into(),
            id: "t1".into(),
            uid: 10000,
            gid: 10001,
            chroot_base: "/srv/jailer".into(),
            netns: Some("/var/run/netns/netd-t1".into()),
            cgroup_version: 2,
            parent_cgroup: "hostagent".into(),
            cgroups: vec!["cpu.max=25000 100000".into(), "memory.max=1".into()],
            vmm_args: vec!["--no-api".into(), "--config-file".into(), "/vm.json".into()],
            console: "/tmp/c".into(),
        };
        let a = s.args().join(" ");
        assert_eq!(
            a,
            "--id t1 --exec-file /usr/local/bin/vmm --uid 10000 --gid 10001 \
             --chroot-base-dir /srv/jailer --cgroup-version 2 --parent-cgroup hostagent \
             --new-pid-ns --netns /var/run/netns/netd-t1 --cgroup cpu.max=25000 100000 \
             --cgroup memory.max=1 -- --no-api --config-file /vm.json"
        );
        assert_eq!(s.root(), Path::new("/srv/jailer/vmm/t1/root"));
        assert_eq!(s.pid_file(), Path::new("/srv/jailer/vmm/t1/root/vmm.pid"));
    }
}
