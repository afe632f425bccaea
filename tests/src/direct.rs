//! Scenarios on this machine (direct KVM): the script runs under `sh` here, in its own
//! process group, with the environment the nested host's `/init` gives its scenarios.

use crate::outcome::Outcome;
use std::fs::{self, File};
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Why a scenario could not be run on this machine (not: why it failed).
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error("cannot create scratch: {0}")]
    Scratch(#[source] io::Error),
    #[error("cannot create output: {0}")]
    Output(#[source] io::Error),
    #[error("cannot dup output: {0}")]
    DupOutput(#[source] io::Error),
    #[error("cannot run sh: {0}")]
    Spawn(#[source] io::Error),
    #[error("cannot wait for sh: {0}")]
    Wait(#[source] io::Error),
}

/// Runs `script` with `sh` in the fresh directory `scratch` (its working directory and
/// `$SCRATCH`, removed afterwards), its output collected in `out_path`, with `$PAYLOAD`
/// set to `payload`, `$PAYLOAD/bin` first on `PATH`, `$PAYLOAD/lib` on
/// `LD_LIBRARY_PATH`, `NESTED=0` and `OUTER_ADDR=127.0.0.1`. After `timeout` its process
/// group is killed (status 137); so is whatever it left running when it ends.
pub fn run(
    scratch: &Path,
    out_path: &Path,
    payload: &Path,
    script: &str,
    timeout: Duration,
) -> Result<Outcome, DirectError> {
    fs::create_dir_all(scratch).map_err(DirectError::Scratch)?;
    let out = File::create(out_path).map_err(DirectError::Output)?;
    let err = out.try_clone().map_err(DirectError::DupOutput)?;
    let path = format!(
        "{}:{}",
        payload.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(scratch)
        .env("PAYLOAD", payload)
        .env("SCRATCH", scratch)
        .env("PATH", path)
        .env("LD_LIBRARY_PATH", payload.join("lib"))
        .env("NESTED", "0")
        .env("OUTER_ADDR", "127.0.0.1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(DirectError::Spawn)?;
    let pgid = child.id() as i32;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                kill_group(pgid);
                let _ = child.wait();
                let mut output = fs::read_to_string(out_path).unwrap_or_default();
                output.push_str(&format!("kvm-tests: timed out after {timeout:?}\n"));
                return Ok(Outcome {
                    status: 137,
                    output,
                });
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(DirectError::Wait(e)),
        }
    };
    // Whatever the scenario left running in its group goes too.
    kill_group(pgid);
    let output = fs::read_to_string(out_path).unwrap_or_default();
    let _ = fs::remove_dir_all(scratch);
    let _ = fs::remove_file(out_path);
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(Outcome {
        status: code,
        output,
    })
}

fn kill_group(pgid: i32) {
    // SAFETY: kill(2) on our own child's process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}
