//! The nested KVM host: QEMU TCG with emulated SVM booted by `tests/nested/boot
//! --serve`, and the command channels (virtio-serial ports on unix sockets) that run
//! scenarios inside it. Protocol (see `tests/nested/init`): a request is one line
//! `<id> <timeout s> <base64 script>`, the answer one line `<id> <status> <base64 output>`.

use crate::harness::Outcome;
use crate::payload;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::io::{BufRead, BufReader, ErrorKind, Write};
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
/// How a request that got no answer in time fails (the harness reboots such a host).
pub const NO_ANSWER: &str = "no answer from the nested host";
/// Extra time the outer side waits beyond a scenario's own timeout.
const SLACK: Duration = Duration::from_secs(30);

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
    pub fn boot(dir: &Path, payload_image: &Path) -> Result<NestedHost, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
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
            let ready = call(&mut channel, id, "echo ready", BOOT_TIMEOUT).map_err(|e| {
                format!(
                    "nested host did not come up: {e}\n{}",
                    host.console_tail(40)
                )
            })?;
            if ready.status != 0 || ready.output.trim() != "ready" {
                return Err(format!("nested host answered {ready:?} to a ping"));
            }
            host.give_back(channel);
        }
        Ok(host)
    }

    /// Runs `script` inside the host (busybox sh, cwd = a fresh `$SCRATCH`).
    pub fn run(&self, script: &str, timeout: Duration) -> Result<Outcome, String> {
        let mut channel = self.take();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        match call(&mut channel, id, script, timeout) {
            Ok(outcome) => {
                self.give_back(channel);
                Ok(outcome)
            }
            // A channel in an unknown state is dropped; the others carry on.
            Err(e) => Err(format!("{e}\n{}", self.console_tail(30))),
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
fn spawn_qemu(sockets: &Path, image: &Path, console: &Path) -> Result<u32, String> {
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
    let (tx, rx) = mpsc::channel::<Result<u32, String>>();
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
                    let _ = tx.send(Err(format!("cannot run {}: {e}", boot.display())));
                }
            }
        })
        .map_err(|e| format!("cannot start the nested-host thread: {e}"))?;
    rx.recv()
        .map_err(|_| "the nested-host thread ended".to_string())?
}

fn connect(path: &Path, console: &Path) -> Result<Channel, String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match UnixStream::connect(path) {
            Ok(stream) => {
                let reader = stream
                    .try_clone()
                    .map_err(|e| format!("cannot clone a channel socket: {e}"))?;
                return Ok(Channel {
                    writer: stream,
                    reader: BufReader::new(reader),
                });
            }
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(console).unwrap_or_default();
                return Err(format!(
                    "cannot connect to {}: {e} (QEMU did not start?)\n{log}",
                    path.display()
                ));
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
) -> Result<Outcome, String> {
    let request = format!("{id} {} {}\n", timeout.as_secs().max(1), B64.encode(script));
    channel
        .writer
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send to the nested host: {e}"))?;
    channel
        .reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| format!("cannot set a socket timeout: {e}"))?;
    let deadline = Instant::now() + timeout + SLACK;
    let mut line = Vec::new();
    loop {
        match channel.reader.read_until(b'\n', &mut line) {
            Ok(0) => return Err("the nested host closed the channel".into()),
            Ok(_) if line.ends_with(b"\n") => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("cannot read from the nested host: {e}")),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{NO_ANSWER} within {}s",
                (timeout + SLACK).as_secs()
            ));
        }
    }
    parse_answer(id, &line)
}

fn parse_answer(id: u64, line: &[u8]) -> Result<Outcome, String> {
    let text = String::from_utf8_lossy(line);
    let mut fields = text.trim_end().splitn(3, ' ');
    let (Some(got_id), Some(status)) = (fields.next(), fields.next()) else {
        return Err(format!("malformed answer from the nested host: {text:?}"));
    };
    if got_id != id.to_string() {
        return Err(format!("answer for request {got_id}, expected {id}"));
    }
    let status: i32 = status
        .parse()
        .map_err(|_| format!("malformed exit status {status:?} from the nested host"))?;
    let output = B64
        .decode(fields.next().unwrap_or("").trim())
        .map_err(|e| format!("malformed output from the nested host: {e}"))?;
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
