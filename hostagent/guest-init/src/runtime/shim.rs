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
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, fork, pivot_root, sethostname, ForkResult};
use serde::{Deserialize, Serialize};

use super::user;

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

fn ctx<T, E: std::fmt::Display>(r: Result<T, E>, what: impl Fn() -> String) -> Result<T, String> {
    r.map_err(|e| format!("{}: {e}", what()))
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
    let cfg: ShimConfig = match fs::read(config)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            status(&format!(
                "ERR reading shim config {}: {e}",
                config.display()
            ));
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
            status(&format!("ERR fork: {e}"));
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
fn prepare(cfg: &ShimConfig) -> Result<Option<fs::File>, String> {
    // The shim must outlive its child to report its exit: protect it from the OOM killer.
    let _ = fs::write("/proc/self/oom_score_adj", "-1000");
    let cgroup = match &cfg.cgroup {
        Some(cg) => {
            let p = cg.join("cgroup.procs");
            Some(ctx(fs::OpenOptions::new().write(true).open(&p), || {
                format!("opening {}", p.display())
            })?)
        }
        None => None,
    };
    match &cfg.mode {
        ShimMode::Run(_) => ctx(
            unshare(
                CloneFlags::CLONE_NEWNS
                    | CloneFlags::CLONE_NEWUTS
                    | CloneFlags::CLONE_NEWIPC
                    | CloneFlags::CLONE_NEWPID,
            ),
            || "unshare".into(),
        )?,
        ShimMode::Exec { pid } => {
            // Open every namespace first: after joining the mount namespace /proc is another.
            let mut fds = Vec::new();
            for (ns, flag) in [
                ("ipc", CloneFlags::CLONE_NEWIPC),
                ("uts", CloneFlags::CLONE_NEWUTS),
                ("pid", CloneFlags::CLONE_NEWPID),
                ("mnt", CloneFlags::CLONE_NEWNS),
            ] {
                let p = format!("/proc/{pid}/ns/{ns}");
                fds.push((ctx(fs::File::open(&p), || format!("opening {p}"))?, flag));
            }
            for (f, flag) in &fds {
                ctx(setns(f.as_fd(), *flag), || format!("setns {flag:?}"))?;
            }
        }
    }
    Ok(cgroup)
}

/// First steps of the child: its cgroup, its normal OOM score.
fn join(cgroup: Option<fs::File>) -> Result<(), String> {
    use std::io::Write;
    if let Some(mut f) = cgroup {
        ctx(f.write_all(b"0"), || "joining the container cgroup".into())?;
    }
    ctx(fs::write("/proc/self/oom_score_adj", "0"), || {
        "oom_score_adj".into()
    })
}

/// Runs in the forked child; returns only on error.
fn child(cfg: &ShimConfig) -> String {
    match child_inner(cfg) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn child_inner(cfg: &ShimConfig) -> Result<Never, String> {
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
            return Err(format!(
                "setrlimit {res}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    let groups: Vec<nix::unistd::Gid> = ids
        .groups
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    ctx(nix::unistd::setgroups(&groups), || "setgroups".into())?;
    ctx(
        nix::unistd::setgid(nix::unistd::Gid::from_raw(ids.gid)),
        || format!("setgid {}", ids.gid),
    )?;
    ctx(
        nix::unistd::setuid(nix::unistd::Uid::from_raw(ids.uid)),
        || format!("setuid {}", ids.uid),
    )?;
    set_pdeathsig(); // cleared by the credential change
    let cwd = cfg.cwd.clone().unwrap_or_else(|| "/".into());
    ctx(chdir(cwd.as_str()), || format!("working directory {cwd}"))?;
    let mut env = cfg.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", ids.home));
    }
    exec(&cfg.argv, &env)
}

fn exec(argv: &[String], env: &[String]) -> Result<Never, String> {
    let Some(arg0) = argv.first() else {
        return Err("empty command".into());
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
            .ok_or_else(|| format!("exec: {arg0:?}: executable file not found in $PATH"))?
    };
    let cstr = |s: &str| CString::new(s).map_err(|_| format!("NUL byte in {s:?}"));
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
    let e = nix::unistd::execve(&exe_c, &args, &envs)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    Err(format!("exec {}: {e}", exe.display()))
}

fn mnt(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    ctx(mount(src, target, fstype, flags, data), || {
        format!(
            "mount {} on {} ({})",
            src.map(|s| s.display().to_string()).unwrap_or_default(),
            target.display(),
            fstype.unwrap_or("bind")
        )
    })
}

fn mkdirs(p: &Path) -> Result<(), String> {
    ctx(fs::create_dir_all(p), || format!("mkdir {}", p.display()))
}

/// Assembles the container's root in its own mount namespace and pivots into it.
fn setup_root(r: &RootSetup) -> Result<(), String> {
    let none: Option<&Path> = None;
    mnt(
        none,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    // Image root, read-only.
    let meta = ctx(fs::metadata(&r.root_source), || {
        format!("image root {}", r.root_source.display())
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
            ctx(fs::write(inside("/etc").join(name), content), || {
                format!("writing /etc/{name}")
            })?;
        }
    }
    ctx(sethostname(&r.hostname), || "sethostname".into())?;
    // pivot_root(".", "."): the old root ends up stacked under the new one; detach it.
    ctx(chdir(&r.rootfs_dir), || "chdir to rootfs".into())?;
    ctx(pivot_root(".", "."), || "pivot_root".into())?;
    ctx(umount2(".", MntFlags::MNT_DETACH), || {
        "detaching old root".into()
    })?;
    ctx(chdir("/"), || "chdir /".into())?;
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
fn setup_dev(dev: &Path) -> Result<(), String> {
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
        ctx(fs::write(&t, b""), || format!("creating {}", t.display()))?;
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
        ctx(std::os::unix::fs::symlink(t, dev.join(l)), || {
            format!("symlink /dev/{l}")
        })?;
    }
    Ok(())
}
