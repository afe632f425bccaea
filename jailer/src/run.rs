//! The jail run: set-up in the jailer (undone on any failure), then a forked child that
//! enters the jail and execs the vmm; the jailer stays outside as a small supervisor.
//!
//! Order: jail directory, exec copy and device nodes, cgroups (all undoable from the
//! host) -> [new PID namespace] fork -> child: join cgroups, rlimits, netns, mount
//! namespace + pivot_root, [setsid], drop privileges, exec. The child reports a failure
//! through a close-on-exec pipe, so the jailer knows whether exec succeeded and undoes
//! everything otherwise.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{
    dup2_stderr, dup2_stdin, dup2_stdout, execve, fork, getppid, pipe2, setsid, ForkResult, Pid,
};

use crate::error::{Context, Error, Result, Step};
use crate::undo::Undo;
use crate::validate::Plan;
use crate::{cgroups, fds, jail, mountns, privileges};

/// How the jailer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The vmm exited with this status.
    Exited(i32),
    /// The vmm was killed by this signal.
    Signaled(i32),
    /// --daemonize: the vmm runs detached.
    Detached,
}

/// What the child needs, all opened before the fork.
struct ChildSetup<'a> {
    plan: &'a Plan,
    argv: Vec<CString>,
    cgroup_dirs: Vec<PathBuf>,
    netns: Option<File>,
    devnull: Option<File>,
    jailer_pid: Pid,
}

/// Runs the vmm in a new jail.
pub fn run(plan: &Plan) -> Result<Outcome> {
    let mut undo = Undo::default();
    let child = match start(plan, &mut undo) {
        Ok(child) => child,
        Err(e) => {
            undo.run();
            return Err(e);
        }
    };
    if plan.daemonize {
        return Ok(Outcome::Detached);
    }
    supervise(child)
}

/// Microseconds of `clock`, or `fixed` when given.
fn clock_us(clock: libc::clockid_t, fixed: Option<u64>) -> u64 {
    if let Some(v) = fixed {
        return v;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, valid for the call.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1000
}

fn start(plan: &Plan, undo: &mut Undo) -> Result<Pid> {
    let start_us = Some(clock_us(libc::CLOCK_MONOTONIC, None));
    let exec_path = jail::create(plan, undo)?;
    let cgroup_dirs = cgroups::create(
        plan.cgroup_version,
        &plan.parent_cgroup,
        &plan.id,
        &plan.cgroups,
        undo,
    )?;
    let netns = match &plan.netns {
        Some(p) => Some(File::open(p).at(Step::Netns, p.display())?),
        None => None,
    };
    let devnull = if plan.daemonize {
        Some(
            File::options()
                .read(true)
                .write(true)
                .open("/dev/null")
                .at(Step::Daemonize, "/dev/null")?,
        )
    } else {
        None
    };
    // As Firecracker's jailer: the vmm learns its id and when its start began.
    let jailer_args = [
        format!("--id={}", plan.id),
        format!(
            "--start-time-us={}",
            clock_us(libc::CLOCK_MONOTONIC, start_us)
        ),
        format!(
            "--start-time-cpu-us={}",
            clock_us(libc::CLOCK_PROCESS_CPUTIME_ID, None)
        ),
    ];
    let argv = std::iter::once(exec_path.as_str())
        .chain(jailer_args.iter().map(String::as_str))
        .chain(plan.vmm_args.iter().map(String::as_str))
        .map(|a| CString::new(a).at(Step::Validate, format!("vmm argument {a:?}")))
        .collect::<Result<Vec<_>>>()?;
    let setup = ChildSetup {
        plan,
        argv,
        cgroup_dirs,
        netns,
        devnull,
        jailer_pid: nix::unistd::getpid(),
    };
    let (rd, wr) = pipe2(OFlag::O_CLOEXEC).at(Step::Fork, "pipe")?;
    if plan.new_pid_ns {
        // Only children are placed in the new namespace: the forked child is its pid 1.
        unshare(CloneFlags::CLONE_NEWPID).at(Step::PidNs, "unshare(CLONE_NEWPID)")?;
    }
    // Termination signals wait until the jailer can forward them to the child.
    let forwarded = forwarded_signals();
    forwarded.thread_block().at(Step::Fork, "sigprocmask")?;
    // SAFETY: the jailer is single-threaded, so the child may allocate and run any code.
    let forked = unsafe { fork() };
    if let Ok(ForkResult::Parent { child }) = forked {
        if let Err(e) = install_forwarding(child) {
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            return Err(e);
        }
    }
    forwarded.thread_unblock().at(Step::Fork, "sigprocmask")?;
    match forked.at(Step::Fork, plan.root.display())? {
        ForkResult::Child => {
            drop(rd);
            let Err(e) = child(setup);
            let mut wr = File::from(wr);
            let _ = wr.write_all(e.to_string().as_bytes());
            // SAFETY: _exit ends the child without running the parent's atexit handlers or
            // destructors (which must run only in the jailer).
            unsafe { libc::_exit(1) }
        }
        ForkResult::Parent { child } => parent(plan, child, rd, wr, undo),
    }
}

/// Writes the pid file and waits for the child's exec (or its error).
fn parent(plan: &Plan, child: Pid, rd: OwnedFd, wr: OwnedFd, undo: &mut Undo) -> Result<Pid> {
    drop(wr);
    let pid_file = plan.root.join(format!("{}.pid", plan.exec_name));
    undo.remove_file(pid_file.clone());
    if let Err(e) = std::fs::write(&pid_file, format!("{child}\n")) {
        let _ = kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
        return Err(Error::new(Step::PidFile, pid_file.display(), e));
    }
    let mut msg = String::new();
    let read = File::from(rd).read_to_string(&mut msg);
    if read.is_err() || !msg.is_empty() {
        let _ = waitpid(child, None);
        if msg.is_empty() {
            msg = format!("{}: cannot read the jailed child's status", Step::Exec);
        }
        return Err(Error::InJail(msg));
    }
    Ok(child)
}

/// The jailed child: returns only on failure.
fn child(s: ChildSetup) -> Result<Infallible> {
    let plan = s.plan;
    cgroups::join(&s.cgroup_dirs)?;
    for limit in &plan.rlimits {
        limit.apply()?;
    }
    if let (Some(ns), Some(path)) = (&s.netns, &plan.netns) {
        setns(ns, CloneFlags::CLONE_NEWNET).at(Step::Netns, path.display())?;
    }
    drop(s.netns);
    mountns::enter(&plan.root, plan.no_pivot)?;
    if let Some(null) = &s.devnull {
        setsid().at(Step::Daemonize, "setsid")?;
        for (i, dup) in [dup2_stdin, dup2_stdout, dup2_stderr].iter().enumerate() {
            dup(null).at(Step::Daemonize, format!("/dev/null -> fd {i}"))?;
        }
    }
    drop(s.devnull);
    privileges::drop_to(plan.uid, plan.gid)?;
    if !plan.daemonize {
        // The vmm must not outlive its supervising jailer.
        // SAFETY: PR_SET_PDEATHSIG takes an integer signal number.
        unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        if !plan.new_pid_ns && getppid() != s.jailer_pid {
            return Err(Error::new(Step::Exec, "jailer", "the jailer exited"));
        }
    }
    reset_signals();
    fds::cloexec_all_but_stdio()?;
    let env: [CString; 0] = [];
    let path = s.argv[0].clone();
    let e = execve(&path, &s.argv, &env).unwrap_err();
    let shown = path.to_string_lossy();
    if e == Errno::ENOENT && std::path::Path::new(shown.as_ref()).exists() {
        return Err(Error::new(
            Step::Exec,
            shown,
            format!(
                "{e} (its ELF interpreter or libraries are not in the jail: use a static binary)"
            ),
        ));
    }
    Err(Error::new(Step::Exec, shown, e))
}

/// The vmm starts with every signal at its default action and none blocked (ignored
/// signals would otherwise be inherited across exec, e.g. the SIGPIPE Rust ignores).
fn reset_signals() {
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: restoring the default action; signals the C library reserves for
            // itself are refused with EINVAL, which is fine.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        None,
    );
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe and takes integers only.
        unsafe { libc::kill(pid, sig) };
    }
}

fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        set.add(sig);
    }
    set
}

/// From now on termination signals sent to the jailer go to `child`.
fn install_forwarding(child: Pid) -> Result<()> {
    CHILD.store(child.as_raw(), Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in forwarded_signals().iter() {
        // SAFETY: the handler only reads an atomic and calls kill (async-signal-safe).
        unsafe { sigaction(sig, &action) }.at(Step::Fork, format!("sigaction({sig})"))?;
    }
    Ok(())
}

/// Waits for the vmm (signals are being forwarded to it).
fn supervise(child: Pid) -> Result<Outcome> {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Outcome::Exited(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Outcome::Signaled(sig as i32)),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::new(Step::Wait, format!("pid {child}"), e)),
        }
    }
}

/// Ends the jailer the way the vmm ended: same exit code, or killed by the same signal.
pub fn mirror(outcome: Outcome) -> ! {
    match outcome {
        Outcome::Detached => std::process::exit(0),
        Outcome::Exited(code) => std::process::exit(code),
        Outcome::Signaled(sig) => {
            let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
            // SAFETY: restoring the default action and raising a signal on ourselves;
            // integers only.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
            }
            std::process::exit(128 + sig)
        }
    }
}
