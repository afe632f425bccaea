//! Named network namespaces, made the way `ip netns add` makes them: an empty file under
//! /var/run/netns bind-mounted over a thread's fresh network namespace, on a shared mount,
//! so `jailer --netns /var/run/netns/NAME` and `ip netns exec NAME` both work.
//!
//! Work inside a namespace runs on a fresh OS thread that `setns`-es into it (never on a
//! pooled tokio thread, which would stay in the wrong namespace).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::{Error, Result};

/// Where named namespaces live.
pub const NETNS_DIR: &str = "/var/run/netns";
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Path of a named namespace.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// True if `name` is a mounted network namespace.
#[allow(clippy::unnecessary_cast)] // f_type's width differs between architectures
pub fn exists(name: &str) -> bool {
    nix::sys::statfs::statfs(&path(name))
        .map(|s| s.filesystem_type().0 as i64 == NSFS_MAGIC)
        .unwrap_or(false)
}

fn ensure_dir() -> Result<()> {
    fs::create_dir_all(NETNS_DIR)?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(None::<&str>, NETNS_DIR, None::<&str>, shared, None::<&str>) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then make it shared (as iproute2 does).
            let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
            mount(Some(NETNS_DIR), NETNS_DIR, None::<&str>, bind, None::<&str>)?;
            mount(None::<&str>, NETNS_DIR, None::<&str>, shared, None::<&str>)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates the named namespace; Ok if it already exists.
pub fn create(name: &str) -> Result<()> {
    if exists(name) {
        return Ok(());
    }
    ensure_dir()?;
    let p = path(name);
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o000)
        .open(&p)?;
    let target = p.clone();
    let res = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        let own = "/proc/thread-self/ns/net";
        mount(
            Some(own),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        Ok(())
    })
    .join()
    .map_err(|_| Error::Kernel("netns creation thread panicked".into()))
    .and_then(|r| r);
    if let Err(e) = res {
        let _ = fs::remove_file(&p);
        return Err(Error::Kernel(format!("creating netns {name}: {e}")));
    }
    Ok(())
}

/// Deletes the named namespace (the kernel frees it once no process holds it).
pub fn delete(name: &str) -> Result<()> {
    let p = path(name);
    match umount2(&p, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(Error::Kernel(format!("unmounting netns {name}: {e}"))),
    }
    match fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Names of namespaces starting with `prefix`.
pub fn list(prefix: &str) -> Vec<String> {
    let Ok(rd) = fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Runs `f` on a new thread inside namespace `name`; awaits its result without blocking.
pub async fn run_in<R, F>(name: &str, f: F) -> Result<R>
where
    R: Send + 'static,
    F: FnOnce() -> Result<R> + Send + 'static,
{
    let file =
        File::open(path(name)).map_err(|e| Error::Kernel(format!("opening netns {name}: {e}")))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let r = setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(Error::from)
            .and_then(|()| f());
        let _ = tx.send(r);
    });
    rx.await
        .map_err(|_| Error::Kernel("netns worker thread died".into()))?
}

/// An rtnetlink handle whose socket lives in namespace `name`.
pub async fn handle(name: &str) -> Result<rtnetlink::Handle> {
    let rt = tokio::runtime::Handle::current();
    let (conn, handle) = run_in(name, move || {
        let _guard = rt.enter();
        let (conn, handle, _) = rtnetlink::new_connection()?;
        Ok((conn, handle))
    })
    .await?;
    tokio::spawn(conn);
    Ok(handle)
}
