//! The per-task state directory `<state-dir>/vm/<task id>/`: `state.json` says what the
//! launch has created so far (netd task, jail, vmm and relay processes, sockets), written
//! atomically after every step, so that a restarted agent can re-attach to the task or
//! release exactly what exists. The directory also holds the VM's console log.

use super::config::JailId;
use super::process::ProcIdent;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Largest state file read back (it is ours, but the disk may be damaged).
const MAX_STATE_BYTES: u64 = 64 * 1024;

/// What exists of one task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskState {
    /// The task.
    pub task_arn: String,
    /// Its id on this host (netd task id, jail id).
    pub task_id: String,
    /// Task CPU units and memory (metrics).
    pub cpu: u32,
    /// MiB.
    pub memory: u32,
    /// Longest container stop timeout (stop waits this plus a margin).
    pub stop_timeout_secs: u32,
    /// Container names, in task order.
    pub containers: Vec<String>,
    /// The uid/gid the task's jail runs under (taps, devices and guest socket are owned
    /// by it); taken before anything is created, given back once all is released.
    #[serde(default)]
    pub jail_id: Option<JailId>,
    /// `<base>/<exec>/<id>`: created (by us, then the jailer) when set.
    #[serde(default)]
    pub jail_dir: Option<PathBuf>,
    /// The netd task exists (or may: its creation was asked for).
    #[serde(default)]
    pub netd_task: bool,
    /// The primary ENI's address.
    #[serde(default)]
    pub eni_ip: Option<String>,
    /// The jailer was started (so `jailer --cleanup` is needed).
    #[serde(default)]
    pub jailer_started: bool,
    /// The vmm (from the jailer's pid file).
    #[serde(default)]
    pub vmm: Option<ProcIdent>,
    /// The guest-channel relay.
    #[serde(default)]
    pub relay: Option<ProcIdent>,
    /// The relay's socket for the agent.
    #[serde(default)]
    pub relay_socket: Option<PathBuf>,
    /// Host path of the vmm's vsock Unix socket.
    #[serde(default)]
    pub vsock_path: Option<PathBuf>,
    /// The guest accepted the task and its containers run.
    #[serde(default)]
    pub running: bool,
}

/// `<dir>/state.json`.
pub fn state_path(task_dir: &Path) -> PathBuf {
    task_dir.join("state.json")
}

/// Writes `state` to `<task_dir>/state.json` atomically (temp, fsync, rename, fsync dir).
pub fn save(task_dir: &Path, state: &TaskState) -> io::Result<()> {
    std::fs::create_dir_all(task_dir)?;
    let tmp = task_dir.join(".state.json.tmp");
    let data = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, state_path(task_dir))?;
    std::fs::File::open(task_dir)?.sync_all()
}

/// Reads the state back; `Ok(None)` when the task has no state file.
pub fn load(task_dir: &Path) -> io::Result<Option<TaskState>> {
    let f = match std::fs::File::open(state_path(task_dir)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut data = Vec::new();
    f.take(MAX_STATE_BYTES + 1).read_to_end(&mut data)?;
    if data.len() as u64 > MAX_STATE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "state file too large",
        ));
    }
    serde_json::from_slice(&data)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Every task state under `state_dir` (`<state_dir>/*/state.json`), for rebuilding what
/// the tasks hold after an agent restart; unreadable ones are returned as errors naming
/// their directory.
pub fn load_all(state_dir: &Path) -> Vec<Result<TaskState, (PathBuf, io::Error)>> {
    let Ok(dir) = std::fs::read_dir(state_dir) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| match load(&e.path()) {
            Ok(Some(st)) => Some(Ok(st)),
            Ok(None) => None,
            Err(err) => Some(Err((e.path(), err))),
        })
        .collect()
}

/// Removes the task directory (the last release step).
pub fn remove(task_dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(task_dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_replace_and_remove() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("t1");
        assert_eq!(load(&dir).unwrap(), None);
        let mut s = TaskState {
            task_arn: "arn:x".into(),
            task_id: "t1".into(),
            cpu: 256,
            memory: 512,
            ..Default::default()
        };
        save(&dir, &s).unwrap();
        s.netd_task = true;
        s.vmm = Some(ProcIdent {
            pid: 7,
            start_ticks: 9,
        });
        save(&dir, &s).unwrap();
        assert_eq!(load(&dir).unwrap(), Some(s));
        assert!(!dir.join(".state.json.tmp").exists());
        std::fs::write(state_path(&dir), b"{not json").unwrap();
        assert_eq!(load(&dir).unwrap_err().kind(), io::ErrorKind::InvalidData);
        std::fs::write(state_path(&dir), vec![b' '; 70_000]).unwrap();
        assert!(load(&dir).unwrap_err().to_string().contains("too large"));
        remove(&dir).unwrap();
        assert!(!dir.exists());
        remove(&dir).unwrap();
    }

    #[test]
    fn the_jail_id_is_recorded_and_old_states_still_load() {
        let d = tempfile::tempdir().unwrap();
        let s = TaskState {
            task_arn: "arn:a".into(),
            task_id: "ta".into(),
            jail_id: Some(JailId {
                uid: 100_007,
                gid: 100_007,
            }),
            ..Default::default()
        };
        save(&d.path().join("ta"), &s).unwrap();
        let text = std::fs::read_to_string(state_path(&d.path().join("ta"))).unwrap();
        assert!(text.contains("\"jailId\""), "{text}");
        // A state written before jail ids were recorded.
        std::fs::create_dir(d.path().join("tb")).unwrap();
        std::fs::write(
            state_path(&d.path().join("tb")),
            br#"{"taskArn":"arn:b","taskId":"tb","cpu":256,"memory":512,"stopTimeoutSecs":30,"containers":[]}"#,
        )
        .unwrap();
        std::fs::create_dir(d.path().join("tc")).unwrap();
        std::fs::write(state_path(&d.path().join("tc")), b"garbage").unwrap();
        std::fs::create_dir(d.path().join("empty")).unwrap();
        let mut all = load_all(d.path());
        all.sort_by_key(|r| match r {
            Ok(s) => s.task_id.clone(),
            Err((p, _)) => p.display().to_string(),
        });
        assert_eq!(all.len(), 3, "{all:?}");
        let errs: Vec<_> = all.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].0.ends_with("tc"));
        let oks: Vec<&TaskState> = all.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(oks[0].jail_id, s.jail_id);
        assert_eq!(oks[1].task_id, "tb");
        assert_eq!(oks[1].jail_id, None);
        assert!(load_all(&d.path().join("missing")).is_empty());
    }
}
