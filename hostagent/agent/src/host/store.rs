//! The task registry in the state directory: one JSON file per task under
//! `<state-dir>/tasks/`, written atomically (temp file, fsync, rename, fsync of the
//! directory), so a crash leaves either the old or the new record, never half of one.

use agent_proto::{ContainerState, Status, TaskSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What the agent knows about one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    /// The launch as received.
    pub spec: TaskSpec,
    /// Last status reported (or about to be).
    pub last_status: Status,
    /// Container states.
    #[serde(default)]
    pub containers: Vec<ContainerState>,
    /// Why it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    /// The ENI address, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ipv4_address: Option<String>,
}

impl TaskRecord {
    /// The state report for this record.
    pub fn report(&self) -> agent_proto::AgentMessage {
        agent_proto::AgentMessage::TaskStateChange {
            task_arn: self.spec.task_arn.clone(),
            last_status: self.last_status,
            containers: self.containers.clone(),
            stopped_reason: self.stopped_reason.clone(),
            private_ipv4_address: self.private_ipv4_address.clone(),
        }
    }
}

/// Writes `bytes` to `path` atomically with file mode `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // One temporary file per write: two writes of one path (two threads) never
    // share one, so neither can rename the other's half-written file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp.{}.{n}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The directory of task records.
#[derive(Debug, Clone)]
pub struct TaskStore {
    dir: PathBuf,
}

impl TaskStore {
    /// Opens (creates) `<state_dir>/tasks`, removing temp files of crashed writers.
    pub fn open(state_dir: &Path) -> std::io::Result<TaskStore> {
        let dir = state_dir.join("tasks");
        std::fs::create_dir_all(&dir)?;
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with('.') {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(TaskStore { dir })
    }

    /// File of a task: the ARN is untrusted text, so the name is its SHA-256.
    fn path_of(&self, task_arn: &str) -> PathBuf {
        let h = Sha256::digest(task_arn.as_bytes());
        self.dir.join(format!("{}.json", hex::encode(&h[..16])))
    }

    /// Stores (replaces) a record.
    pub fn put(&self, rec: &TaskRecord) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(rec).map_err(std::io::Error::other)?;
        write_atomic(&self.path_of(&rec.spec.task_arn), &bytes, 0o600)
    }

    /// The record of a task, if any.
    pub fn get(&self, task_arn: &str) -> std::io::Result<Option<TaskRecord>> {
        match read_record(&self.path_of(task_arn)) {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every record; unreadable files are skipped with a warning.
    pub fn list(&self) -> std::io::Result<Vec<TaskRecord>> {
        let mut out = vec![];
        for e in std::fs::read_dir(&self.dir)? {
            let p = e?.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            match read_record(&p) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!("task record {}: {e}", p.display()),
            }
        }
        out.sort_by(|a: &TaskRecord, b| a.spec.task_arn.cmp(&b.spec.task_arn));
        Ok(out)
    }

    /// Removes the records of tasks that have been STOPPED for `retention` or more
    /// at `now` (the time of a record's last write, its file's modification time, is
    /// when it stopped: a STOPPED record is not written again). Returns how many.
    /// Unreadable files are left for [`TaskStore::list`] to warn about.
    pub fn prune_stopped(
        &self,
        retention: std::time::Duration,
        now: std::time::SystemTime,
    ) -> std::io::Result<usize> {
        let mut pruned = 0;
        for e in std::fs::read_dir(&self.dir)? {
            let p = e?.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let Ok(modified) = std::fs::metadata(&p).and_then(|m| m.modified()) else {
                continue;
            };
            let old = now
                .duration_since(modified)
                .is_ok_and(|age| age >= retention);
            if !old {
                continue;
            }
            if matches!(read_record(&p), Ok(r) if r.last_status == Status::Stopped) {
                std::fs::remove_file(&p)?;
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    /// ARNs of tasks that have not stopped.
    pub fn active(&self) -> std::io::Result<Vec<String>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|r| r.last_status != Status::Stopped)
            .map(|r| r.spec.task_arn)
            .collect())
    }
}

/// One record file (a file that does not parse is `InvalidData`).
fn read_record(p: &Path) -> std::io::Result<TaskRecord> {
    let b = std::fs::read(p)?;
    serde_json::from_slice(&b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use agent_proto::NetworkSpec;

    pub fn spec(arn: &str) -> TaskSpec {
        TaskSpec {
            task_arn: arn.into(),
            account_id: "111122223333".into(),
            task_definition_arn: "arn:td/web:1".into(),
            cpu: 256,
            memory: 512,
            containers: vec![],
            network: NetworkSpec {
                subnets: vec!["subnet-1".into()],
                security_groups: vec![],
                assign_public_ip: false,
            },
            volumes: vec![],
        }
    }

    fn record(arn: &str, status: Status) -> TaskRecord {
        TaskRecord {
            spec: spec(arn),
            last_status: status,
            containers: vec![],
            stopped_reason: None,
            private_ipv4_address: None,
        }
    }

    #[test]
    fn stopped_records_are_pruned_after_the_retention_only() {
        use std::time::{Duration, SystemTime};
        let tmp = tempfile::tempdir().unwrap();
        let s = TaskStore::open(tmp.path()).unwrap();
        for (arn, st) in [
            ("arn:old-stopped", Status::Stopped),
            ("arn:new-stopped", Status::Stopped),
            ("arn:old-running", Status::Running),
        ] {
            s.put(&record(arn, st)).unwrap();
        }
        // Age two of them by two hours (their files' modification time).
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        for arn in ["arn:old-stopped", "arn:old-running"] {
            let f = std::fs::File::options()
                .write(true)
                .open(s.path_of(arn))
                .unwrap();
            f.set_modified(two_hours_ago).unwrap();
        }
        let hour = Duration::from_secs(3600);
        assert_eq!(s.prune_stopped(hour, SystemTime::now()).unwrap(), 1);
        assert_eq!(s.get("arn:old-stopped").unwrap(), None);
        assert!(
            s.get("arn:new-stopped").unwrap().is_some(),
            "within the retention"
        );
        assert!(
            s.get("arn:old-running").unwrap().is_some(),
            "never a live task"
        );
        // An hour later the other STOPPED one goes too.
        let later = SystemTime::now() + hour;
        assert_eq!(s.prune_stopped(hour, later).unwrap(), 1);
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn concurrent_writes_of_one_record_never_fail_or_leave_a_torn_file() {
        let tmp = tempfile::tempdir().unwrap();
        let s = TaskStore::open(tmp.path()).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for n in 0..50 {
                        let mut r = record("arn:t", Status::Running);
                        // Records of different lengths, so a torn file would show.
                        r.stopped_reason = Some("x".repeat((i * 50 + n) % 97));
                        s.put(&r).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(s.get("arn:t").unwrap().is_some());
    }

    #[test]
    fn records_round_trip_and_survive_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let s = TaskStore::open(tmp.path()).unwrap();
        assert_eq!(s.get("arn:a").unwrap(), None);
        let mut r = TaskRecord {
            spec: spec("arn:aws:ecs:us-east-1:1:task/c/../../etc"),
            last_status: Status::Pending,
            containers: vec![],
            stopped_reason: None,
            private_ipv4_address: None,
        };
        s.put(&r).unwrap();
        r.last_status = Status::Stopped;
        r.stopped_reason = Some("x".into());
        s.put(&r).unwrap();
        // a crashed writer's temp file is cleaned on open, not read as a task
        std::fs::write(tmp.path().join("tasks/.junk.tmp.1"), b"{").unwrap();
        let s = TaskStore::open(tmp.path()).unwrap();
        assert_eq!(s.list().unwrap(), vec![r.clone()]);
        assert_eq!(s.get(&r.spec.task_arn).unwrap(), Some(r));
        assert!(s.active().unwrap().is_empty());
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("tasks"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(names[0].ends_with(".json") && !names[0].contains(".."));
    }

    #[test]
    fn corrupt_record_is_skipped_by_list_and_an_error_for_get() {
        let tmp = tempfile::tempdir().unwrap();
        let s = TaskStore::open(tmp.path()).unwrap();
        let r = TaskRecord {
            spec: spec("arn:b"),
            last_status: Status::Pending,
            containers: vec![],
            stopped_reason: None,
            private_ipv4_address: None,
        };
        s.put(&r).unwrap();
        std::fs::write(s.path_of("arn:b"), b"{not json").unwrap();
        assert!(s.list().unwrap().is_empty());
        assert!(s.get("arn:b").is_err());
    }
}
