//! Starts a shim process and reads its status from fd 3.

use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use nix::fcntl::OFlag;

use super::shim::{self, ShimConfig};

/// Why a container (or health check) process did not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("encoding shim config: {0}")]
    EncodeConfig(#[source] serde_json::Error),
    #[error("writing {}: {source}", path.display())]
    WriteConfig {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pipe: {0}")]
    Pipe(#[source] nix::Error),
    #[error("starting shim {}: {source}", exe.display())]
    StartShim {
        exe: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The shim's own `ERR` line (a [`shim::ShimError`] printed in the shim process).
    #[error("{0}")]
    Shim(String),
    /// The shim ended without reporting the process or an error.
    #[error("shim ended without starting the process ({0:?})")]
    NoProcess(io::Result<ExitStatus>),
}

/// A shim whose child process is set up (or failed to be).
pub struct Spawned {
    pub shim: Child,
    /// Host pid of the container process (the shim's child).
    pub pid: i32,
}

/// Writes the shim config to `config_file` and starts `<shim_exe> __shim <config_file>`.
/// Returns once the container process has exec'd (or failed: `Err` with the shim's reason,
/// the shim already reaped).
pub fn spawn_shim(
    shim_exe: &Path,
    cfg: &ShimConfig,
    config_file: &Path,
    stdout: Stdio,
    stderr: Stdio,
) -> Result<Spawned, SpawnError> {
    let json = serde_json::to_vec(cfg).map_err(SpawnError::EncodeConfig)?;
    fs::write(config_file, json).map_err(|source| SpawnError::WriteConfig {
        path: config_file.into(),
        source,
    })?;
    let (r, w): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SpawnError::Pipe)?;
    let w_raw = w.as_raw_fd();
    let mut cmd = Command::new(shim_exe);
    cmd.arg("__shim")
        .arg(config_file)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if w_raw == shim::STATUS_FD {
                if libc::fcntl(w_raw, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(w_raw, shim::STATUS_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| SpawnError::StartShim {
        exe: shim_exe.into(),
        source,
    })?;
    drop(w);
    let mut status = String::new();
    let _ = fs::File::from(r).read_to_string(&mut status);
    let mut pid = None;
    let mut err = None;
    for line in status.lines() {
        if let Some(p) = line.strip_prefix("PID ") {
            pid = p.trim().parse::<i32>().ok();
        } else if let Some(e) = line.strip_prefix("ERR ") {
            err = Some(e.to_string());
        }
    }
    match (pid, err) {
        (Some(pid), None) => Ok(Spawned { shim: child, pid }),
        (_, e) => {
            let _ = child.kill();
            let st = child.wait();
            Err(e.map_or(SpawnError::NoProcess(st), SpawnError::Shim))
        }
    }
}

/// Converts a shim exit status into the container's exit code.
pub fn exit_code(st: io::Result<ExitStatus>) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    let st = st.ok()?;
    st.code().or_else(|| st.signal().map(|s| 128 + s))
}
