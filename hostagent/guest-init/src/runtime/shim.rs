//! The container shim: `guest-init __shim <config.json>`, started by the runtime for every
//! container (and every health check). Being a fresh, single-threaded process it can
//! unshare, fork and allocate freely, which the multi-threaded init cannot.
//!
//! Run mode: join the cgroup, unshare mount/UTS/IPC/PID namespaces, fork; the child (PID 1
//! of the new PID namespace) assembles the root (image root read-only + overlayfs upper,
//! volumes, /proc, /dev, /sys), pivots into it, drops to the user, and execs. Exec mode
//! (health checks): join a running container's namespaces and cgroup, fork, exec.
//!
//! Status goes to fd 3, line by line: `PID <host pid of the container process>`, then either
//! nothing (fd 3 closes on a successful exec) or `ERR <message>`. The shim waits for the
//! child and exits with its exit code, or 128 + signal.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, fork, pivot_root, sethostname, ForkResult};
use serde::{Deserialize, Serialize};

use super::user::{self, UserError};

/// fd on which the shim reports to the runtime.
pub const STATUS_FD: i32 = 3;
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimConfig {
    pub name: String,
    pub mode: ShimMode,
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    /// (resource number, soft, hard)
    pub ulimits: Vec<(u32, u64, u64)>,
    pub cgroup: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShimMode {
    Run(Box<RootSetup>),
    /// Join the namespaces of this (host) pid.
    Exec {
        pid: i32,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootSetup {
    pub hostname: String,
    /// Block device or directory holding the image root.
    pub root_source: PathBuf,
    pub root_fs_type: String,
    pub lower_dir: PathBuf,
    pub upper_dir: PathBuf,
    pub work_dir: PathBuf,
    pub rootfs_dir: PathBuf,
    pub readonly: bool,
    pub binds: Vec<Bind>,
    /// Files written into the container's /etc (name, content), e.g. resolv.conf, hosts.
    pub etc_files: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    pub readonly: bool,
}

fn status(msg: &str) {
    let line = format!("{msg}\n");
    // SAFETY: writing a valid buffer to an fd we own (or a closed fd, which just fails).
    unsafe { libc::write(STATUS_FD, line.as_ptr().cast(), line.len()) };
}

/// Why the shim could not start the process. The text goes to the runtime after `ERR `
/// and from there, as the container's stop reason, to the host.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("reading shim config {}: {source}", path.display())]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading shim config {}: {source}", path.display())]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("fork: {0}")]
    Fork(#[source] Errno),
    /// Opening a cgroup's `cgroup.procs` or a namespace file.
    #[error("opening {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unshare: {0}")]
    Unshare(#[source] Errno),
    #[error("setns {flag:?}: {source}")]
    Setns {
        flag: CloneFlags,
        #[source]
        source: Errno,
    },
    #[error("joining the container cgroup: {0}")]
    JoinCgroup(#[source] io::Error),
    #[error("oom_score_adj: {0}")]
    OomScore(#[source] io::Error),
    #[error(transparent)]
    User(#[from] UserError),
    #[error("setrlimit {resource}: {source}")]
    Setrlimit {
        resource: u32,
        #[source]
        source: io::Error,
    },
    #[error("setgroups: {0}")]
    Setgroups(#[source] Errno),
    #[error("setgid {gid}: {source}")]
    Setgid {
        gid: u32,
        #[source]
        source: Errno,
    },
    #[error("setuid {uid}: {source}")]
    Setuid {
        uid: u32,
        #[source]
        source: Errno,
    },
    #[error("working directory {dir}: {source}")]
    WorkingDirectory {
        dir: String,
        #[source]
        source: Errno,
    },
    #[error("empty command")]
    EmptyCommand,
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotInPath(String),
    #[error("NUL byte in {0:?}")]
    NulByte(String),
    #[error("exec {}: {source}", exe.display())]
    Exec {
        exe: PathBuf,
        #[source]
        source: Errno,
    },
    /// `fstype` is "bind" for a bind mount or remount.
    #[error("mount {source_path} on {} ({fstype}): {source}", target.display())]
    Mount {
        source_path: String,
        target: PathBuf,
        fstype: String,
        #[source]
        source: Errno,
    },
    #[error("mkdir {}: {source}", path.display())]
    Mkdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("image root {}: {source}", path.display())]
    ImageRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing /etc/{name}: {source}")]
    WriteEtc {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("sethostname: {0}")]
    Sethostname(#[source] Errno),
    #[error("chdir to rootfs: {0}")]
    ChdirRootfs(#[source] Errno),
    #[error("pivot_root: {0}")]
    PivotRoot(#[source] Errno),
    #[error("detaching old root: {0}")]
    DetachOldRoot(#[source] Errno),
    #[error("chdir /: {0}")]
    ChdirSlash(#[source] Errno),
    #[error("creating {}: {source}", path.display())]
    CreateNode {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("symlink /dev/{link}: {source}")]
    Symlink {
        link: &'static str,
        #[source]
        source: io::Error,
    },
}

fn read_config(path: &Path) -> Result<ShimConfig, ShimError> {
    let bytes = fs::read(path).map_err(|source| ShimError::ReadConfig {
        path: path.into(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ShimError::ParseConfig {
        path: path.into(),
        source,
    })
}

fn set_pdeathsig() {
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
}

/// Entry point of `guest-init __shim`; returns the process exit code.
pub fn main(config: &Path) -> i32 {
    set_pdeathsig();
    let cfg = match read_config(config) {
        Ok(c) => c,
        Err(e) => {
            status(&format!("ERR {e}"));
            return 127;
        }
    };
    let cgroup = match prepare(&cfg) {
        Ok(c) => c,
        Err(e) => {
            status(&format!("ERR {e}"));
            return 127;
        }
    };
    // SAFETY: the shim is single-threaded, so the child may allocate after fork.
    match unsafe { fork() } {
        Err(e) => {
            status(&format!("ERR {}", ShimError::Fork(e)));
            127
        }
        Ok(ForkResult::Child) => {
            set_pdeathsig();
            let e = match join(cgroup) {
                Ok(()) => child(&cfg),
                Err(e) => e,
            };
            status(&format!("ERR {e}"));
            // SAFETY: terminate the child without running the parent's atexit handlers.
            unsafe { libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => {
            status(&format!("PID {child}"));
            // SAFETY: closing our copy of the status fd; the runtime sees EOF once the child
            // execs or dies.
            unsafe { libc::close(STATUS_FD) };
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => return code,
                    Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
                    Ok(_) => continue,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return 255,
                }
            }
        }
    }
}

/// Runs in the shim before fork: opens the cgroup (joined by the child only, so that the
/// shim itself stays out of the container's memory limit and OOM kills), namespaces.
fn prepare(cfg: &ShimConfig) -> Result<Option<fs::File>, ShimError> {
    // The shim must outlive its child to report its exit: protect it from the OOM killer.
    let _ = fs::write("/proc/self/oom_score_adj", "-1000");
    let cgroup = match &cfg.cgroup {
        Some(cg) => {
            let path = cg.join("cgroup.procs");
            match fs::OpenOptions::new().write(true).open(&path) {
                Ok(f) => Some(f),
                Err(source) => return Err(ShimError::Open { path, source }),
            }
        }
        None => None,
    };
    match &cfg.mode {
        ShimMode::Run(_) => unshare(
            CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWUTS
                | CloneFlags::CLONE_NEWIPC
                | CloneFlags::CLONE_NEWPID,
        )
        .map_err(ShimError::Unshare)?,
        ShimMode::Exec { pid } => {
            // Open every namespace first: after joining the mount namespace /proc is another.
            let mut fds = Vec::new();
            for (ns, flag) in [
                ("ipc", CloneFlags::CLONE_NEWIPC),
                ("uts", CloneFlags::CLONE_NEWUTS),
                ("pid", CloneFlags::CLONE_NEWPID),
                ("mnt", CloneFlags::CLONE_NEWNS),
            ] {
                let path = PathBuf::from(format!("/proc/{pid}/ns/{ns}"));
                match fs::File::open(&path) {
                    Ok(f) => fds.push((f, flag)),
                    Err(source) => return Err(ShimError::Open { path, source }),
                }
            }
            for (f, flag) in &fds {
                setns(f.as_fd(), *flag).map_err(|source| ShimError::Setns {
                    flag: *flag,
                    source,
                })?;
            }
        }
    }
    Ok(cgroup)
}

/// First steps of the child: its cgroup, its normal OOM score.
fn join(cgroup: Option<fs::File>) -> Result<(), ShimError> {
    use std::io::Write;
    if let Some(mut f) = cgroup {
        f.write_all(b"0").map_err(ShimError::JoinCgroup)?;
    }
    fs::write("/proc/self/oom_score_adj", "0").map_err(ShimError::OomScore)
}

/// Runs in the forked child; returns only on error.
fn child(cfg: &ShimConfig) -> ShimError {
    match child_inner(cfg) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn child_inner(cfg: &ShimConfig) -> Result<Never, ShimError> {
    if let ShimMode::Run(root) = &cfg.mode {
        setup_root(root)?;
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    let ids = user::resolve(cfg.user.as_deref(), &passwd, &group)?;
    for &(res, soft, hard) in &cfg.ulimits {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads a valid rlimit struct.
        if unsafe { libc::setrlimit(res as _, &lim) } != 0 {
            return Err(ShimError::Setrlimit {
                resource: res,
                source: io::Error::last_os_error(),
            });
        }
    }
    let groups: Vec<nix::unistd::Gid> = ids
        .groups
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).map_err(ShimError::Setgroups)?;
    nix::unistd::setgid(nix::unistd::Gid::from_raw(ids.gid)).map_err(|source| {
        ShimError::Setgid {
            gid: ids.gid,
            source,
        }
    })?;
    nix::unistd::setuid(nix::unistd::Uid::from_raw(ids.uid)).map_err(|source| {
        ShimError::Setuid {
            uid: ids.uid,
            source,
        }
    })?;
    set_pdeathsig(); // cleared by the credential change
    let cwd = cfg.cwd.clone().unwrap_or_else(|| "/".into());
    if let Err(source) = chdir(cwd.as_str()) {
        return Err(ShimError::WorkingDirectory { dir: cwd, source });
    }
    let mut env = cfg.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", ids.home));
    }
    exec(&cfg.argv, &env)
}

fn exec(argv: &[String], env: &[String]) -> Result<Never, ShimError> {
    let Some(arg0) = argv.first() else {
        return Err(ShimError::EmptyCommand);
    };
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let exe = if arg0.contains('/') {
        PathBuf::from(arg0)
    } else {
        path_var
            .split(':')
            .map(|d| Path::new(d).join(arg0))
            .find(|p| fs::metadata(p).map(|m| m.is_file()).unwrap_or(false))
            .ok_or_else(|| ShimError::NotInPath(arg0.clone()))?
    };
    let cstr = |s: &str| CString::new(s).map_err(|_| ShimError::NulByte(s.to_string()));
    let exe_c = cstr(&exe.to_string_lossy())?;
    let args = argv
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let envs = env.iter().map(|a| cstr(a)).collect::<Result<Vec<_>, _>>()?;
    // SAFETY: plain fcntl/signal calls on our own process before exec: the status fd closes
    // on exec, and SIGPIPE goes back to its default (the Rust runtime ignores it).
    unsafe {
        libc::fcntl(STATUS_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
    match nix::unistd::execve(&exe_c, &args, &envs) {
        Ok(never) => match never {},
        Err(source) => Err(ShimError::Exec { exe, source }),
    }
}

fn mnt(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), ShimError> {
    mount(src, target, fstype, flags, data).map_err(|source| ShimError::Mount {
        source_path: src.map(|s| s.display().to_string()).unwrap_or_default(),
        target: target.into(),
        fstype: fstype.unwrap_or("bind").into(),
        source,
    })
}

fn mkdirs(p: &Path) -> Result<(), ShimError> {
    fs::create_dir_all(p).map_err(|source| ShimError::Mkdir {
        path: p.into(),
        source,
    })
}

/// Assembles the container's root in its own mount namespace and pivots into it.
fn setup_root(r: &RootSetup) -> Result<(), ShimError> {
    let none: Option<&Path> = None;
    mnt(
        none,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    // Image root, read-only.
    let meta = fs::metadata(&r.root_source).map_err(|source| ShimError::ImageRoot {
        path: r.root_source.clone(),
        source,
    })?;
    if meta.is_dir() {
        mnt(
            Some(&r.root_source),
            &r.lower_dir,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        mnt(
            none,
            &r.lower_dir,
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None,
        )?;
    } else {
        mnt(
            Some(&r.root_source),
            &r.lower_dir,
            Some(&r.root_fs_type),
            MsFlags::MS_RDONLY,
            None,
        )?;
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        r.lower_dir.display(),
        r.upper_dir.display(),
        r.work_dir.display()
    );
    mnt(
        Some(Path::new("overlay")),
        &r.rootfs_dir,
        Some("overlay"),
        MsFlags::empty(),
        Some(&opts),
    )?;
    let inside = |p: &str| r.rootfs_dir.join(p.trim_start_matches('/'));
    for b in &r.binds {
        let t = inside(&b.target);
        mkdirs(&t)?;
        mnt(
            Some(&b.source),
            &t,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        if b.readonly {
            mnt(
                none,
                &t,
                None,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
                None,
            )?;
        }
    }
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mkdirs(&inside("/proc"))?;
    mnt(
        Some(Path::new("proc")),
        &inside("/proc"),
        Some("proc"),
        nosuid,
        None,
    )?;
    mkdirs(&inside("/sys"))?;
    mnt(
        Some(Path::new("sysfs")),
        &inside("/sys"),
        Some("sysfs"),
        nosuid | MsFlags::MS_RDONLY,
        None,
    )?;
    setup_dev(&inside("/dev"))?;
    if !r.etc_files.is_empty() {
        mkdirs(&inside("/etc"))?;
        for (name, content) in &r.etc_files {
            fs::write(inside("/etc").join(name), content).map_err(|source| {
                ShimError::WriteEtc {
                    name: name.clone(),
                    source,
                }
            })?;
        }
    }
    sethostname(&r.hostname).map_err(ShimError::Sethostname)?;
    // pivot_root(".", "."): the old root ends up stacked under the new one; detach it.
    chdir(&r.rootfs_dir).map_err(ShimError::ChdirRootfs)?;
    pivot_root(".", ".").map_err(ShimError::PivotRoot)?;
    umount2(".", MntFlags::MNT_DETACH).map_err(ShimError::DetachOldRoot)?;
    chdir("/").map_err(ShimError::ChdirSlash)?;
    if r.readonly {
        mnt(
            none,
            Path::new("/"),
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )?;
    }
    Ok(())
}

/// A minimal /dev: tmpfs with the usual character devices bound from the init's /dev.
fn setup_dev(dev: &Path) -> Result<(), ShimError> {
    mkdirs(dev)?;
    mnt(
        Some(Path::new("tmpfs")),
        dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=755,size=65536k"),
    )?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = Path::new("/dev").join(node);
        if !host.exists() {
            continue;
        }
        let t = dev.join(node);
        if let Err(source) = fs::write(&t, b"") {
            return Err(ShimError::CreateNode { path: t, source });
        }
        mnt(Some(&host), &t, None, MsFlags::MS_BIND, None)?;
    }
    mkdirs(&dev.join("pts"))?;
    mnt(
        Some(Path::new("devpts")),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )?;
    mkdirs(&dev.join("shm"))?;
    mnt(
        Some(Path::new("shm")),
        &dev.join("shm"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777,size=65536k"),
    )?;
    for (l, t) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        std::os::unix::fs::symlink(t, dev.join(l))
            .map_err(|source| ShimError::Symlink { link: l, source })?;
    }
    Ok(())
}
