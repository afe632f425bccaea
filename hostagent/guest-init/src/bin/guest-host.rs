//! `guest-host`: a minimal host side for the guest init, for end-to-end tests and
//! debugging: listens where a Firecracker-style vsock delivers the guest's connection
//! (`<uds_path>_1024`), sends a task, prints every guest message as one JSON line, and
//! exits 0 once the guest reported `taskStopped` (1 on any failure).

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use guest_proto::host::HostListener;
use guest_proto::{GuestMessage, ProtoError, TaskSpec, CONTROL_PORT};

#[derive(Parser)]
#[command(
    name = "guest-host",
    about = "Send a task to a guest init and print what it reports"
)]
struct Args {
    /// The vmm's vsock `uds_path`; the listener is `<uds_path>_<port>`.
    #[arg(long)]
    uds_path: PathBuf,
    #[arg(long, default_value_t = CONTROL_PORT)]
    port: u32,
    /// Task spec (JSON, guest-proto TaskSpec).
    #[arg(long)]
    task: PathBuf,
    /// Seconds to wait for the guest to connect.
    #[arg(long, default_value_t = 120)]
    accept_timeout: u64,
    /// Send stopTask this many seconds after the task was accepted.
    #[arg(long)]
    stop_after: Option<u64>,
    /// Mark that stop as a Spot interruption.
    #[arg(long)]
    spot: bool,
}

/// Why guest-host gave up; printed after "guest-host: ".
#[derive(Debug, thiserror::Error)]
enum GuestHostError {
    #[error("{}: {source}", path.display())]
    ReadTask {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", path.display())]
    ParseTask {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("listening: {0}")]
    Listen(#[source] io::Error),
    #[error("accept: {0}")]
    Accept(#[source] ProtoError),
    /// The control channel failed after the guest connected.
    #[error(transparent)]
    Channel(#[from] ProtoError),
    #[error(transparent)]
    ReadTimeout(io::Error),
    #[error(transparent)]
    Print(serde_json::Error),
    #[error("the guest hung up without taskStopped")]
    NoTaskStopped,
}

fn run(a: &Args) -> Result<(), GuestHostError> {
    let path = || a.task.clone();
    let bytes = std::fs::read(&a.task).map_err(|source| GuestHostError::ReadTask {
        path: path(),
        source,
    })?;
    let task: TaskSpec =
        serde_json::from_slice(&bytes).map_err(|source| GuestHostError::ParseTask {
            path: path(),
            source,
        })?;
    let listener = HostListener::bind(&a.uds_path, a.port).map_err(GuestHostError::Listen)?;
    eprintln!("guest-host: listening on {}", listener.path().display());
    let mut conn = listener
        .accept(Duration::from_secs(a.accept_timeout))
        .map_err(GuestHostError::Accept)?;
    eprintln!("guest-host: guest connected ({})", conn.peer.agent);
    conn.run_task(&task)?;
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(GuestHostError::ReadTimeout)?;
    let start = Instant::now();
    let mut stop_sent = false;
    let mut stopped = false;
    let out = std::io::stdout();
    loop {
        if let Some(s) = a.stop_after {
            if !stop_sent && start.elapsed() >= Duration::from_secs(s) {
                conn.stop_task("stopped by guest-host", a.spot)?;
                stop_sent = true;
            }
        }
        match conn.recv() {
            Ok(m) => {
                stopped |= matches!(m, GuestMessage::TaskStopped { .. });
                let line = serde_json::to_string(&m).map_err(GuestHostError::Print)?;
                let _ = writeln!(out.lock(), "{line}");
            }
            Err(ProtoError::Closed) => break,
            Err(e) if e.is_timeout() => {}
            // The VM resetting may cut the connection right after taskStopped.
            Err(_) if stopped => break,
            Err(e) => return Err(e.into()),
        }
    }
    if stopped {
        Ok(())
    } else {
        Err(GuestHostError::NoTaskStopped)
    }
}

fn main() -> ExitCode {
    let a = Args::parse();
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guest-host: {e}");
            ExitCode::FAILURE
        }
    }
}
