//! The nested KVM host: QEMU TCG with emulated SVM booted by `tests/nested/boot
//! --serve`, and the command channels (virtio-serial ports on unix sockets) that run
//! scenarios inside it. Protocol (see `tests/nested/init`): a request is one line
//! `<id> <timeout s> <base64 script>`, the answer one line `<id> <status> <base64 output>`.

use crate::outcome::Outcome;
use crate::payload;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::io::{self, BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Command channels: scenarios that run at the same time inside the host.
const CHANNELS: usize = 4;
/// How long the host may take to boot (TCG on a busy 2-core machine).
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// Extra time the outer side waits beyond a scenario's own timeout.
const SLACK: Duration = Duration::from_secs(30);

/// Why one request on a command channel got no valid answer.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("cannot send to the nested host: {0}")]
    Send(#[source] io::Error),
    #[error("cannot set a socket timeout: {0}")]
    SetTimeout(#[source] io::Error),
    #[error("the nested host closed the channel")]
    Closed,
    #[error("cannot read from the nested host: {0}")]
    Read(#[source] io::Error),
    /// Not even within the request's own timeout plus [`SLACK`]: the host is stuck (the
    /// harness reboots such a host).
    #[error("no answer from the nested host within {secs}s")]
    NoAnswer { secs: u64 },
    #[error("malformed answer from the nested host: {answer:?}")]
    Malformed { answer: String },
    #[error("answer for request {got}, expected {expected}")]
    WrongId { got: String, expected: u64 },
    #[error("malformed exit status {status:?} from the nested host")]
    BadStatus { status: String },
    #[error("malformed output from the nested host: {0}")]
    BadOutput(#[source] base64::DecodeError),
}

/// Why the nested host could not be started or could not run a scenario.
#[derive(Debug, thiserror::Error)]
pub enum NestedError {
    #[error("cannot create {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot run {}: {source}", boot.display())]
    Spawn { boot: PathBuf, source: io::Error },
    #[error("cannot start the nested-host thread: {0}")]
    Thread(#[source] io::Error),
    #[error("the nested-host thread ended")]
    ThreadEnded,
    #[error("cannot clone a channel socket: {0}")]
    CloneSocket(#[source] io::Error),
    #[error("cannot connect to {}: {source} (QEMU did not start?)\n{log}", path.display())]
    Connect {
        path: PathBuf,
        source: io::Error,
        /// The host's console so far.
        log: String,
    },
    #[error("nested host did not come up: {source}\n{console}")]
    NotUp {
        source: ChannelError,
        /// The tail of the host's console.
        console: String,
    },
    #[error("nested host answered {0:?} to a ping")]
    BadPing(Outcome),
    /// A scenario's request failed; its channel is dropped.
    #[error("{source}\n{console}")]
    Request {
        source: ChannelError,
        /// The tail of the host's console.
        console: String,
    },
}

struct Channel {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

/// A running nested host. QEMU dies with the test process (parent-death signal).
pub struct NestedHost {
    pid: u32,
    console: PathBuf,
    free: Mutex<Vec<Channel>>,
    returned: Condvar,
    next_id: AtomicU64,
}

impl NestedHost {
    /// Boots the host with `payload_image` as its payload disk; files go to `dir`.
    pub fn boot(dir: &Path, payload_image: &Path) -> Result<NestedHost, NestedError> {
        std::fs::create_dir_all(dir).map_err(|source| NestedError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let sockets = dir.join("channels");
        let console = dir.join("host-console.log");
        let pid = spawn_qemu(&sockets, payload_image, &console)?;
        let mut channels = Vec::new();
        for i in 0..CHANNELS {
            let path = sockets.join(format!("chan{i}"));
            channels.push(connect(&path, &console)?);
        }
        let host = NestedHost {
            pid,
            console,
            free: Mutex::new(Vec::new()),
            returned: Condvar::new(),
            next_id: AtomicU64::new(1),
        };
        // The first request on each channel waits for the host to boot.
        for mut channel in channels {
            let id = host.next_id.fetch_add(1, Ordering::Relaxed);
            let ready = call(&mut channel, id, "echo ready", BOOT_TIMEOUT).map_err(|source| {
                NestedError::NotUp {
                    source,
                    console: host.console_tail(40),
                }
            })?;
            if ready.status != 0 || ready.output.trim() != "ready" {
                return Err(NestedError::BadPing(ready));
            }
            host.give_back(channel);
        }
        Ok(host)
    }

    /// Runs `script` inside the host (busybox sh, cwd = a fresh `$SCRATCH`).
    pub fn run(&self, script: &str, timeout: Duration) -> Result<Outcome, NestedError> {
        let mut channel = self.take();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        match call(&mut channel, id, script, timeout) {
            Ok(outcome) => {
                self.give_back(channel);
                Ok(outcome)
            }
            // A channel in an unknown state is dropped; the others carry on.
            Err(source) => Err(NestedError::Request {
                source,
                console: self.console_tail(30),
            }),
        }
    }

    /// Whether QEMU still runs (it is reaped by its spawning thread when it ends; a
    /// host whose channel just closed gets a few seconds to finish dying).
    pub fn is_alive(&self) -> bool {
        for _ in 0..50 {
            if !self.running() {
                return false;
            }
            thread::sleep(Duration::from_millis(100));
        }
        true
    }

    fn running(&self) -> bool {
        Path::new(&format!("/proc/{}/stat", self.pid)).exists()
    }

    /// Kills QEMU (after its channels failed); it is reaped by its spawning thread.
    pub fn kill(&self) {
        if self.running() {
            // SAFETY: kill(2) on the QEMU child this host started; no memory involved.
            unsafe {
                libc::kill(self.pid as i32, libc::SIGKILL);
            }
        }
    }

    /// The last `lines` lines of the host's console, for error messages.
    pub fn console_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.console).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let start = all.len().saturating_sub(lines);
        format!(
            "--- nested host console ({}, pid {}), last {} lines:\n{}",
            self.console.display(),
            self.pid,
            lines,
            all[start..].join("\n")
        )
    }

    fn take(&self) -> Channel {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(channel) = free.pop() {
                return channel;
            }
            free = self.returned.wait(free).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn give_back(&self, channel: Channel) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.push(channel);
        self.returned.notify_one();
    }
}

/// Starts `tests/nested/boot --serve` from a thread that never ends, so that the
/// parent-death signal (which follows the spawning *thread*) fires only when the test
/// process exits. Returns QEMU's pid (the boot script execs QEMU).
fn spawn_qemu(sockets: &Path, image: &Path, console: &Path) -> Result<u32, NestedError> {
    let boot = payload::repo_root().join("tests/nested/boot");
    let mut command = Command::new(&boot);
    command
        .arg("--payload")
        .arg(image)
        .arg("--serve")
        .arg(sockets)
        .arg("--channels")
        .arg(CHANNELS.to_string())
        .arg("--console")
        .arg(console)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of
    // the parent; it runs in the forked child before exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel::<io::Result<u32>>();
    thread::Builder::new()
        .name("nested-host".into())
        .spawn(move || {
            let child: Result<Child, _> = command.spawn();
            match child {
                Ok(mut child) => {
                    let _ = tx.send(Ok(child.id()));
                    // Reap QEMU if it ends early; then keep this thread alive forever.
                    let _ = child.wait();
                    loop {
                        thread::park();
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })
        .map_err(NestedError::Thread)?;
    rx.recv()
        .map_err(|_| NestedError::ThreadEnded)?
        .map_err(|source| NestedError::Spawn { boot, source })
}

fn connect(path: &Path, console: &Path) -> Result<Channel, NestedError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match UnixStream::connect(path) {
            Ok(stream) => {
                let reader = stream.try_clone().map_err(NestedError::CloneSocket)?;
                return Ok(Channel {
                    writer: stream,
                    reader: BufReader::new(reader),
                });
            }
            Err(source) if Instant::now() > deadline => {
                return Err(NestedError::Connect {
                    path: path.to_path_buf(),
                    source,
                    log: std::fs::read_to_string(console).unwrap_or_default(),
                });
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn call(
    channel: &mut Channel,
    id: u64,
    script: &str,
    timeout: Duration,
) -> Result<Outcome, ChannelError> {
    let request = format!("{id} {} {}\n", timeout.as_secs().max(1), B64.encode(script));
    channel
        .writer
        .write_all(request.as_bytes())
        .map_err(ChannelError::Send)?;
    channel
        .reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(ChannelError::SetTimeout)?;
    let deadline = Instant::now() + timeout + SLACK;
    let mut line = Vec::new();
    loop {
        match channel.reader.read_until(b'\n', &mut line) {
            Ok(0) => return Err(ChannelError::Closed),
            Ok(_) if line.ends_with(b"\n") => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(ChannelError::Read(e)),
        }
        if Instant::now() > deadline {
            return Err(ChannelError::NoAnswer {
                secs: (timeout + SLACK).as_secs(),
            });
        }
    }
    parse_answer(id, &line)
}

fn parse_answer(id: u64, line: &[u8]) -> Result<Outcome, ChannelError> {
    let text = String::from_utf8_lossy(line);
    let mut fields = text.trim_end().splitn(3, ' ');
    let (Some(got_id), Some(status)) = (fields.next(), fields.next()) else {
        return Err(ChannelError::Malformed {
            answer: text.to_string(),
        });
    };
    if got_id != id.to_string() {
        return Err(ChannelError::WrongId {
            got: got_id.to_string(),
            expected: id,
        });
    }
    let status: i32 = status.parse().map_err(|_| ChannelError::BadStatus {
        status: status.to_string(),
    })?;
    let output = B64
        .decode(fields.next().unwrap_or("").trim())
        .map_err(ChannelError::BadOutput)?;
    Ok(Outcome {
        status,
        output: String::from_utf8_lossy(&output).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed_and_checked() {
        let ok = parse_answer(7, b"7 3 aGVsbG8K\n").unwrap();
        assert_eq!(ok.status, 3);
        assert_eq!(ok.output, "hello\n");
        let empty = parse_answer(1, b"1 0 \n").unwrap();
        assert_eq!(empty.output, "");
        assert!(parse_answer(8, b"7 0 aGVsbG8K\n").is_err(), "wrong id");
        assert!(parse_answer(7, b"7 x aGVsbG8K\n").is_err(), "bad status");
        assert!(parse_answer(7, b"7 0 !!!\n").is_err(), "bad base64");
        assert!(parse_answer(7, b"garbage\n").is_err());
    }
}
