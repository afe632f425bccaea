//! The audit log (the CloudTrail idea): one JSON line per mutating call, accepted
//! or refused, written by a dedicated thread so that the request path never waits
//! on the disk.
//!
//! The queue between the calls and the writer is bounded ([`QUEUE_LINES`]). A
//! mutating call reserves its line's slot before it runs: when the queue is full
//! (the disk does not keep up), the call is refused with `ThrottlingException` and
//! never runs unrecorded. A call refused before it could reserve (bad signature,
//! unknown operation, ...) takes a slot if one is free and is otherwise counted in
//! [`AuditLog::dropped`]. [`AuditLog::close`] flushes and syncs the file (SIGTERM).

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Lines the queue holds before mutating calls are refused.
pub const QUEUE_LINES: usize = 4096;

/// How long [`AuditLog::close`] waits for the writer to flush.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest tenant-given string (operation, access key) written, in bytes.
const MAX_FIELD: usize = 128;

/// One audit record: one line of the log.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// When the call was answered, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// `ecs` or `logs`.
    pub api: &'static str,
    /// The caller's account: the verified one, or for a refused signature the
    /// account of the access key it names (none when the key is unknown).
    pub account: Option<String>,
    /// The access key named by the request, when it names one.
    pub access_key_id: Option<String>,
    /// The operation, from `X-Amz-Target` (at most 128 bytes of it).
    pub operation: String,
    /// The `x-amzn-RequestId` of the answer.
    pub request_id: String,
    /// Peer `IP:port` of the connection.
    pub source_address: Option<String>,
    /// `OK`, or the error code of the answer.
    pub outcome: String,
}

impl Record {
    /// The line, without its newline; every string is JSON-escaped, so no field
    /// can end the line early.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Whether `op` changes state: every operation but `Describe*`, `List*`, `Get*`
/// and `Filter*` (the reads of ECS and CloudWatch Logs), unknown ones included.
pub fn is_mutating(op: &str) -> bool {
    !["Describe", "List", "Get", "Filter"]
        .iter()
        .any(|p| op.starts_with(p))
}

/// At most [`MAX_FIELD`] bytes of `s`, cut at a character boundary.
pub fn bounded(s: &str) -> String {
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// `time` for Unix milliseconds `ms`: RFC 3339, UTC, milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

enum Msg {
    Line(String),
    Close(oneshot::Sender<()>),
}

/// A reserved place for one line in the queue.
pub struct Slot(mpsc::OwnedPermit<Msg>);

impl Slot {
    /// Queues the record (never waits).
    pub fn write(self, r: &Record) {
        self.0.send(Msg::Line(r.to_line()));
    }
}

/// The writer's handle: the queue and its counters.
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    dropped: AtomicU64,
    written: std::sync::Arc<AtomicU64>,
}

impl AuditLog {
    /// Opens (appends to; creates with mode 0600) `path` and starts the writer thread.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        Self::open_with(path, QUEUE_LINES)
    }

    /// [`AuditLog::open`] with a queue of `lines`.
    pub fn open_with(path: &Path, lines: usize) -> std::io::Result<AuditLog> {
        use std::os::unix::fs::OpenOptionsExt;
        let ctx = |e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("audit log {}: {e}", path.display()))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(ctx)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(ctx)?;
        let (tx, rx) = mpsc::channel(lines.max(1));
        let written = std::sync::Arc::new(AtomicU64::new(0));
        let w = written.clone();
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || writer(file, rx, &w))
            .map_err(ctx)?;
        Ok(AuditLog {
            tx,
            dropped: AtomicU64::new(0),
            written,
        })
    }

    /// Reserves a line for a call about to run; None when the queue is full.
    pub fn reserve(&self) -> Option<Slot> {
        self.tx.clone().try_reserve_owned().ok().map(Slot)
    }

    /// Queues a record if there is room; otherwise counts it as dropped.
    pub fn try_write(&self, r: &Record) {
        match self.reserve() {
            Some(s) => s.write(r),
            None => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    tracing::warn!("audit log queue full: {} lines dropped so far", n + 1);
                }
            }
        }
    }

    /// Lines that found the queue full (refused calls only; see the module doc).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Lines queued and not yet taken by the writer.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Lines written to the file.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Flushes and syncs every line queued so far, and stops the writer; lines
    /// queued afterwards are not written. Waits at most [`CLOSE_TIMEOUT`].
    pub async fn close(&self) {
        let (ack, done) = oneshot::channel();
        let wait = async {
            if self.tx.send(Msg::Close(ack)).await.is_ok() {
                let _ = done.await;
            }
        };
        if tokio::time::timeout(CLOSE_TIMEOUT, wait).await.is_err() {
            tracing::error!("audit log: not flushed within {CLOSE_TIMEOUT:?}");
        }
    }
}

/// The writer thread: a line per message, flushed whenever the queue is empty.
fn writer(file: File, mut rx: mpsc::Receiver<Msg>, written: &AtomicU64) {
    let mut out = BufWriter::with_capacity(64 << 10, file);
    let mut failed = false;
    let mut put = |out: &mut BufWriter<File>, line: &str| {
        let r = out
            .write_all(line.as_bytes())
            .and_then(|_| out.write_all(b"\n"));
        match r {
            Ok(()) => {
                written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if !failed => {
                failed = true;
                tracing::error!("audit log write: {e}");
            }
            Err(_) => {}
        }
    };
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Line(l) => put(&mut out, &l),
            Msg::Close(ack) => {
                let _ = out.flush();
                let _ = out.get_ref().sync_data();
                let _ = ack.send(());
                return;
            }
        }
        if rx.is_empty() {
            if let Err(e) = out.flush() {
                tracing::error!("audit log flush: {e}");
            }
        }
    }
    let _ = out.flush();
    let _ = out.get_ref().sync_data();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(op: &str) -> Record {
        Record {
            time: rfc3339_ms(1_440_938_160_123),
            api: "ecs",
            account: Some("111122223333".into()),
            access_key_id: Some("AKID".into()),
            operation: bounded(op),
            request_id: "r".into(),
            source_address: Some("127.0.0.1:5".into()),
            outcome: "OK".into(),
        }
    }

    #[test]
    fn one_line_per_record_whatever_the_strings() {
        let r = rec("StopTask\n{\"forged\":true}\r\u{2028}");
        let line = r.to_line();
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["operation"], r.operation);
        assert_eq!(back["time"], "2015-08-30T12:36:00.123Z");
        assert_eq!(bounded(&"é".repeat(100)).len(), 128);
    }

    #[test]
    fn reads_are_not_mutating() {
        for op in [
            "DescribeTasks",
            "ListClusters",
            "GetLogEvents",
            "FilterLogEvents",
        ] {
            assert!(!is_mutating(op), "{op}");
        }
        for op in ["RunTask", "StopTask", "PutLogEvents", "Nonsense", ""] {
            assert!(is_mutating(op), "{op}");
        }
    }

    #[tokio::test]
    async fn full_queue_refuses_and_close_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/audit.log");
        let log = AuditLog::open_with(&p, 2).unwrap();
        // Hold both slots: the next reservation fails, a refused call is dropped.
        let s1 = log.reserve().unwrap();
        let s2 = log.reserve().unwrap();
        assert!(log.reserve().is_none());
        log.try_write(&rec("X"));
        assert_eq!(log.dropped(), 1);
        s1.write(&rec("A"));
        s2.write(&rec("B"));
        log.close().await;
        let text = std::fs::read_to_string(&p).unwrap();
        let ops: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["operation"].to_string())
            .collect();
        assert_eq!(ops, ["\"A\"", "\"B\""]);
        assert_eq!(log.written(), 2);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
