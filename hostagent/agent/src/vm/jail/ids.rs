//! One uid/gid per jail: the pool of `--jail-uid-range` ids.
//!
//! An id is held from the launch that takes it (recorded in the task's `state.json`
//! before anything is created) until the task's release has removed everything the task
//! had (vmm dead, jail and state directories gone, netd task and so its taps deleted);
//! only then is it given back ([`JailIdPool::release`]). After an agent restart the pool
//! is rebuilt from the recorded states ([`JailIdPool::hold`]). On top of that an id is
//! never handed out while any host process runs with it as a uid or gid (real,
//! effective, saved or fs; [`ids_in_use`] reads `/proc/*/status`), whatever the pool
//! believes. Ids are taken round-robin, so a released id is the last to be reused.

use super::super::config::{JailId, JailIds};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// No jail id for a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Every id of the range is taken.
    #[error(transparent)]
    Exhausted(#[from] Exhausted),
    /// The task already holds one: an earlier launch of it was not released (its state
    /// directory and id stay with that launch).
    #[error("task {task_id} already holds jail uid {uid} (launched twice, or not yet released)")]
    AlreadyHeld {
        /// The task.
        task_id: String,
        /// Its id.
        uid: u32,
    },
}

/// No id of the range is free.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no free jail uid: all {capacity} ids of --jail-uid-range {range} are held by tasks \
     ({held}) or used by host processes ({busy})"
)]
pub struct Exhausted {
    /// The configured range.
    pub range: JailIds,
    /// Its size.
    pub capacity: u64,
    /// Ids held by tasks of this agent.
    pub held: usize,
    /// Other ids of the range some host process uses.
    pub busy: usize,
}

#[derive(Debug, Default)]
struct Pool {
    /// id -> the task id holding it.
    held: HashMap<u32, String>,
    /// Where the next search starts (offset into the range).
    next: u64,
}

/// The jail ids of one agent.
#[derive(Debug)]
pub struct JailIdPool {
    ids: JailIds,
    pool: Mutex<Pool>,
}

impl JailIdPool {
    /// An empty pool over `ids`.
    pub fn new(ids: JailIds) -> JailIdPool {
        JailIdPool {
            ids,
            pool: Mutex::new(Pool::default()),
        }
    }

    /// The configured ids.
    pub fn ids(&self) -> JailIds {
        self.ids
    }

    fn in_range(&self, uid: u32) -> bool {
        matches!(self.ids, JailIds::Range { first, last } if (first..=last).contains(&uid))
    }

    /// Marks `id` as held by `task_id` (a task recorded before an agent restart). Ids
    /// outside the range (a shared id, an earlier configuration) are ignored here: the
    /// host process check still keeps them from being handed out while they run.
    pub fn hold(&self, task_id: &str, id: JailId) {
        if self.in_range(id.uid) {
            crate::util::lock(&self.pool)
                .held
                .insert(id.uid, task_id.to_string());
        }
    }

    /// A free id for `task_id`: held by no task and used by no process in `busy` (from
    /// [`ids_in_use`]). A task that already holds one is refused.
    pub fn allocate(&self, task_id: &str, busy: &HashSet<u32>) -> Result<JailId, IdError> {
        let (first, last) = match self.ids {
            JailIds::Shared(id) => return Ok(id),
            JailIds::Range { first, last } => (first, last),
        };
        let mut p = crate::util::lock(&self.pool);
        if let Some((&uid, _)) = p.held.iter().find(|(_, t)| t.as_str() == task_id) {
            return Err(IdError::AlreadyHeld {
                task_id: task_id.to_string(),
                uid,
            });
        }
        let capacity = u64::from(last - first) + 1;
        for i in 0..capacity {
            let off = (p.next + i) % capacity;
            // `off < capacity`, so `first + off <= last` fits.
            let uid = first + u32::try_from(off).unwrap_or(0);
            if p.held.contains_key(&uid) || busy.contains(&uid) {
                continue;
            }
            p.held.insert(uid, task_id.to_string());
            p.next = (off + 1) % capacity;
            return Ok(JailId { uid, gid: uid });
        }
        let held = p.held.len();
        Err(IdError::Exhausted(Exhausted {
            range: self.ids,
            capacity,
            held,
            busy: busy.iter().filter(|u| !p.held.contains_key(u)).count(),
        }))
    }

    /// Gives `id` back once everything of `task_id` is gone (a release that succeeded).
    /// An id held by another task is left alone.
    pub fn release(&self, task_id: &str, id: JailId) {
        let mut p = crate::util::lock(&self.pool);
        if p.held.get(&id.uid).is_some_and(|t| t == task_id) {
            p.held.remove(&id.uid);
        }
    }

    /// How many ids tasks hold.
    pub fn held(&self) -> usize {
        crate::util::lock(&self.pool).held.len()
    }
}

/// The ids of `ids`' range that some host process runs with (any of its uids or gids),
/// from `/proc/*/status`. Empty for a shared id (nothing to choose).
pub fn ids_in_use(ids: JailIds) -> HashSet<u32> {
    let JailIds::Range { first, last } = ids else {
        return HashSet::new();
    };
    let mut out = HashSet::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        if !name.as_encoded_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        // A process that ended meanwhile has no status: it uses nothing any more.
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        for v in status_ids(&status) {
            if (first..=last).contains(&v) {
                out.insert(v);
            }
        }
    }
    out
}

/// Every number on the `Uid:` and `Gid:` lines of a `/proc/<pid>/status` text.
pub fn status_ids(status: &str) -> impl Iterator<Item = u32> + '_ {
    status
        .lines()
        .filter_map(|l| l.strip_prefix("Uid:").or_else(|| l.strip_prefix("Gid:")))
        .flat_map(str::split_whitespace)
        .filter_map(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: u32, last: u32) -> JailIdPool {
        JailIdPool::new(JailIds::Range { first, last })
    }

    fn id(uid: u32) -> JailId {
        JailId { uid, gid: uid }
    }

    #[test]
    fn each_task_gets_its_own_id_until_the_range_is_exhausted() {
        let p = range(1000, 1002);
        let none = HashSet::new();
        let a = p.allocate("ta", &none).unwrap();
        let b = p.allocate("tb", &none).unwrap();
        let c = p.allocate("tc", &none).unwrap();
        assert_eq!((a, b, c), (id(1000), id(1001), id(1002)));
        // The same task asking again (a second launch of it) is refused.
        let e = p.allocate("tb", &none).unwrap_err();
        assert_eq!(
            e,
            IdError::AlreadyHeld {
                task_id: "tb".into(),
                uid: 1001
            }
        );
        let IdError::Exhausted(e) = p.allocate("td", &none).unwrap_err() else {
            panic!("not exhausted")
        };
        assert_eq!((e.capacity, e.held, e.busy), (3, 3, 0));
        assert!(
            e.to_string()
                .contains("no free jail uid: all 3 ids of --jail-uid-range 1000-1002"),
            "{e}"
        );
        // Released by someone else: still held. By its task: free again.
        p.release("tx", b);
        assert!(p.allocate("td", &none).is_err());
        p.release("tb", b);
        assert_eq!(p.held(), 2);
        assert_eq!(p.allocate("td", &none).unwrap(), b);
    }

    #[test]
    fn a_released_id_is_the_last_to_be_reused() {
        let p = range(10, 13);
        let none = HashSet::new();
        let a = p.allocate("ta", &none).unwrap();
        p.release("ta", a);
        // 11, 12, 13 come before 10 again.
        let next: Vec<u32> = ["tb", "tc", "td", "te"]
            .iter()
            .map(|t| p.allocate(t, &none).unwrap().uid)
            .collect();
        assert_eq!(next, vec![11, 12, 13, 10]);
    }

    #[test]
    fn ids_used_by_host_processes_and_recorded_tasks_are_skipped() {
        let p = range(1, 4);
        p.hold("old", id(1));
        p.hold("elsewhere", id(99)); // outside the range: ignored
        let busy: HashSet<u32> = [2, 3].into();
        assert_eq!(p.allocate("new", &busy).unwrap(), id(4));
        let IdError::Exhausted(e) = p.allocate("more", &busy).unwrap_err() else {
            panic!("not exhausted")
        };
        assert_eq!((e.held, e.busy), (2, 2));
        assert!(e.to_string().contains("used by host processes (2)"), "{e}");
    }

    #[test]
    fn a_shared_id_is_given_to_everyone() {
        let shared = id(10_000);
        let p = JailIdPool::new(JailIds::Shared(shared));
        let none = HashSet::new();
        assert_eq!(p.allocate("a", &none).unwrap(), shared);
        assert_eq!(p.allocate("b", &none).unwrap(), shared);
        assert_eq!(p.held(), 0);
        assert!(ids_in_use(JailIds::Shared(shared)).is_empty());
    }

    #[test]
    fn status_lines_give_every_uid_and_gid() {
        let s = "Name:\tx\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t9\n";
        let v: Vec<u32> = status_ids(s).collect();
        assert_eq!(v, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    }

    /// A real process running as an id of the range makes it busy; once it is gone the
    /// id is free again (root only: setuid).
    #[test]
    fn a_live_process_with_the_id_makes_it_busy() {
        // SAFETY: geteuid has no arguments and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: needs root");
            return;
        }
        use std::os::unix::process::CommandExt;
        let uid = 41_390 + std::process::id() % 500;
        let ids = JailIds::Range {
            first: uid,
            last: uid,
        };
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .uid(uid)
            .gid(uid)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !ids_in_use(ids).contains(&uid) {
            assert!(std::time::Instant::now() < deadline, "uid {uid} not seen");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let p = JailIdPool::new(ids);
        assert!(p.allocate("t", &ids_in_use(ids)).is_err());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!ids_in_use(ids).contains(&uid));
        assert_eq!(p.allocate("t", &ids_in_use(ids)).unwrap(), id(uid));
    }
}
