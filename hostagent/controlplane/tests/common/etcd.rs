//! The etcd side of the harness. Test binaries whose name starts with `etcd` (for
//! example `etcd_api`, which runs the suites of `tests/suites`) run every
//! [`super::ControlPlane`] over a real etcd (Debian's `/usr/bin/etcd`) instead of
//! SQLite: one etcd per data directory, kept while a control plane over that
//! directory lives, so kill -9 and restart tests keep their state.

use controlplane::store::etcd_process::{available, EtcdProcess};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

/// Lease TTL of test replicas (etcd's minimum is about 2 s).
pub const LEASE_TTL_MS: &str = "2000";
/// Key prefix of test replicas.
pub const PREFIX: &str = "/cp";

/// Whether this test binary runs the control plane over etcd.
pub fn etcd_mode() -> bool {
    let crate_name = module_path!().split("::").next().unwrap_or("");
    crate_name.starts_with("etcd")
}

/// Skips the calling test (returns true) when `/usr/bin/etcd` is missing.
pub fn skip_without_etcd() -> bool {
    if available() {
        return false;
    }
    eprintln!("SKIP: /usr/bin/etcd missing (install Debian's etcd-server)");
    true
}

/// The etcd of `data_dir`, started if no control plane over it holds one.
pub fn etcd_for(data_dir: &Path) -> Arc<EtcdProcess> {
    static RUNNING: Mutex<Vec<(PathBuf, Weak<EtcdProcess>)>> = Mutex::new(Vec::new());
    let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    running.retain(|(_, w)| w.strong_count() > 0);
    if let Some(e) = running
        .iter()
        .find(|(d, _)| d == data_dir)
        .and_then(|(_, w)| w.upgrade())
    {
        return e;
    }
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let etcd_dir = data_dir.with_file_name(format!("{name}-etcd"));
    let e = Arc::new(EtcdProcess::start(&etcd_dir).expect("start /usr/bin/etcd"));
    running.push((data_dir.to_path_buf(), Arc::downgrade(&e)));
    e
}

/// The flags that put a control plane over `etcd`.
pub fn flags(etcd: &EtcdProcess) -> Vec<String> {
    let mut f = etcd.client_flags();
    f.extend([
        "--etcd-prefix".into(),
        PREFIX.into(),
        "--lease-ttl-ms".into(),
        LEASE_TTL_MS.into(),
    ]);
    f
}
