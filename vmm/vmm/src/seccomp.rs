//! seccomp filters (seccompiler), one per thread kind: `api` (HTTP thread), `vmm` (the
//! event loop, installed right after InstanceStart built the VM, before it handles any
//! guest event), `vcpu` (each vCPU thread, before its first KVM_RUN). Default action: kill
//! the process. `--no-seccomp` installs nothing; `--seccomp-filter FILE` takes seccompiler's
//! JSON format (`compile_from_json`) with the three filters `api`, `vmm`, `vcpu`.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

/// Thread kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// The API server thread.
    Api,
    /// The event loop (main) thread.
    Vmm,
    /// A vCPU thread.
    Vcpu,
}

impl ThreadKind {
    /// The filter's name (also the key in a JSON filter file).
    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Api => "api",
            ThreadKind::Vmm => "vmm",
            ThreadKind::Vcpu => "vcpu",
        }
    }
}

/// Errors building or installing filters.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// Filter compilation.
    #[error("seccomp filter: {0}")]
    Compile(String),
    /// The filter file.
    #[error("cannot read seccomp filter file {0}: {1}")]
    File(String, std::io::Error),
    /// A filter the file lacks.
    #[error("seccomp filter file has no {0:?} filter (needs api, vmm and vcpu)")]
    Missing(&'static str),
    /// seccomp(2) failed.
    #[error("cannot install the {0} seccomp filter: {1}")]
    Install(&'static str, String),
}

static FILTERS: OnceLock<Option<HashMap<String, BpfProgram>>> = OnceLock::new();

// ioctl request numbers.
const KVM_RUN: u64 = 0xAE80;
const TUNSETOFFLOAD: u64 = 0x4004_54d0;
const FIONBIO: u64 = 0x5421;
const TCGETS: u64 = 0x5401;
const TCSETS: u64 = 0x5402;
const TCSETSW: u64 = 0x5403;
const TIOCGWINSZ: u64 = 0x5413;

/// Syscalls every thread makes (memory allocation, locks, signals, logging, exit).
const COMMON: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_futex,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_sigaltstack,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_clock_gettime,
    libc::SYS_getrandom,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_tgkill,
    libc::SYS_statx,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_fcntl,
];

const VMM: &[i64] = &[
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_openat,
    libc::SYS_lseek,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    // Block discard on the Sync engine (hole punching).
    libc::SYS_fallocate,
    // Block's Async engine: submitting requests (and waiting for them when a device is
    // dropped). Its rings are set up at PUT /drives, before this filter is installed.
    libc::SYS_io_uring_enter,
    // io_uring runs its completion work by interrupting the thread's blocking syscall
    // (poll with a timeout), which the kernel then resumes through restart_syscall.
    libc::SYS_restart_syscall,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_readv,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_accept4,
    libc::SYS_connect,
    libc::SYS_shutdown,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    // std's and the getrandom crate's fallback waits for the kernel's entropy pool with
    // poll on /dev/random (seen in the static build inside the nested host).
    libc::SYS_poll,
    libc::SYS_ppoll,
];

const API: &[i64] = &[
    libc::SYS_accept4,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_shutdown,
    libc::SYS_poll,
];

fn ioctl_rules(requests: &[u64]) -> Result<Vec<SeccompRule>, SeccompError> {
    requests
        .iter()
        .map(|r| {
            SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, *r)
                .and_then(|c| SeccompRule::new(vec![c]))
                .map_err(|e| SeccompError::Compile(e.to_string()))
        })
        .collect()
}

/// The built-in filter of a thread kind.
pub fn default_filter(kind: ThreadKind) -> Result<BpfProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let extra = match kind {
        ThreadKind::Api => API,
        ThreadKind::Vmm => VMM,
        ThreadKind::Vcpu => &[],
    };
    for s in COMMON.iter().chain(extra) {
        rules.insert(*s, Vec::new());
    }
    let ioctls: &[u64] = match kind {
        ThreadKind::Api => &[FIONBIO],
        ThreadKind::Vmm => &[FIONBIO, TCGETS, TCSETS, TCSETSW, TIOCGWINSZ],
        ThreadKind::Vcpu => &[KVM_RUN, TUNSETOFFLOAD],
    };
    rules.insert(libc::SYS_ioctl, ioctl_rules(ioctls)?);
    if kind == ThreadKind::Vmm {
        // Unix sockets only (guest-initiated vsock connections).
        let unix = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            libc::AF_UNIX as u64,
        )
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(|e| SeccompError::Compile(e.to_string()))?;
        rules.insert(libc::SYS_socket, vec![unix]);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Trap,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| SeccompError::Compile(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SeccompError::Compile(e.to_string()))
}

/// Compiles a seccompiler JSON filter file; it must define `api`, `vmm` and `vcpu`.
pub fn filters_from_json(
    path: &std::path::Path,
) -> Result<HashMap<String, BpfProgram>, SeccompError> {
    let f =
        std::fs::File::open(path).map_err(|e| SeccompError::File(path.display().to_string(), e))?;
    let map = seccompiler::compile_from_json(f, TargetArch::x86_64)
        .map_err(|e| SeccompError::Compile(e.to_string()))?;
    for k in [ThreadKind::Api, ThreadKind::Vmm, ThreadKind::Vcpu] {
        if !map.contains_key(k.name()) {
            return Err(SeccompError::Missing(k.name()));
        }
    }
    Ok(map)
}

/// Sets the filters threads install (once per process): `None` disables seccomp
/// (`--no-seccomp`), `Some(path)` loads a JSON file, else the built-in filters.
pub fn configure(disabled: bool, file: Option<&std::path::Path>) -> Result<(), SeccompError> {
    let filters = if disabled {
        None
    } else if let Some(p) = file {
        Some(filters_from_json(p)?)
    } else {
        let mut m = HashMap::new();
        for k in [ThreadKind::Api, ThreadKind::Vmm, ThreadKind::Vcpu] {
            m.insert(k.name().to_string(), default_filter(k)?);
        }
        Some(m)
    };
    if filters.is_some() {
        install_sigsys_handler()?;
    }
    let _ = FILTERS.set(filters);
    Ok(())
}

thread_local! {
    /// The filter this thread installed (named by the SIGSYS handler).
    static FILTERED_AS: std::cell::Cell<Option<ThreadKind>> = const { std::cell::Cell::new(None) };
}

/// Exit status after a forbidden syscall (what a kill by SIGSYS would give).
pub const BAD_SYSCALL_EXIT: i32 = 128 + libc::SIGSYS;

/// Installs the SIGSYS handler that reports a syscall the filters trapped.
fn install_sigsys_handler() -> Result<(), SeccompError> {
    // SAFETY: sigaction with a zeroed struct filled in before use; the handler only calls
    // async-signal-safe functions (write, _exit) and touches no shared state.
    let rc = unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_sigsys as *const () as libc::sighandler_t;
        act.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGSYS, &act, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(SeccompError::Install(
            "SIGSYS handler",
            std::io::Error::last_os_error().to_string(),
        ));
    }
    Ok(())
}

/// "vmm: seccomp: forbidden syscall <n> on a <kind> thread, exiting\n" into `buf`;
/// returns the length.
fn bad_syscall_message(nr: i32, kind: Option<ThreadKind>, buf: &mut [u8; 96]) -> usize {
    let mut len = 0;
    let mut put = |bytes: &[u8], len: &mut usize| {
        for b in bytes {
            if *len < buf.len() {
                buf[*len] = *b;
                *len += 1;
            }
        }
    };
    put(b"vmm: seccomp: forbidden syscall ", &mut len);
    let mut digits = [0u8; 12];
    let mut n = nr.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    if nr < 0 {
        put(b"-", &mut len);
    }
    put(&digits[i..], &mut len);
    put(b" on a", &mut len);
    put(
        match kind {
            Some(ThreadKind::Api) => b"n api",
            Some(ThreadKind::Vmm) => b" vmm",
            Some(ThreadKind::Vcpu) => b" vcpu",
            None => b"n unfiltered",
        },
        &mut len,
    );
    put(b" thread, exiting\n", &mut len);
    len
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // For SIGSYS, siginfo_t holds (x86_64) si_call_addr at byte 16 and si_syscall (int) at 24.
    let nr = if info.is_null() {
        -1
    } else {
        // SAFETY: the kernel passes a valid siginfo_t (128 bytes) to an SA_SIGINFO handler;
        // offset 24 lies inside it and is 4-byte aligned.
        unsafe { std::ptr::read((info as *const u8).add(24) as *const i32) }
    };
    let kind = FILTERED_AS.try_with(|k| k.get()).ok().flatten();
    let mut buf = [0u8; 96];
    let len = bad_syscall_message(nr, kind, &mut buf);
    // SAFETY: write(2) of a stack buffer and _exit(2): both async-signal-safe and allowed
    // by every filter.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), len);
        libc::_exit(BAD_SYSCALL_EXIT);
    }
}

/// Installs the calling thread's filter, if filters were configured (the vmm binary does;
/// library users and tests that never call [`configure`] run unfiltered).
pub fn apply(kind: ThreadKind) -> Result<(), SeccompError> {
    let Some(Some(filters)) = FILTERS.get() else {
        return Ok(());
    };
    let Some(prog) = filters.get(kind.name()) else {
        return Err(SeccompError::Missing(kind.name()));
    };
    if prog.is_empty() {
        return Ok(());
    }
    seccompiler::apply_filter(prog)
        .map_err(|e| SeccompError::Install(kind.name(), e.to_string()))?;
    FILTERED_AS.with(|k| k.set(Some(kind)));
    tracing::debug!("seccomp filter {} installed", kind.name());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_filters_compile_and_json_files_load() {
        for k in [ThreadKind::Api, ThreadKind::Vmm, ThreadKind::Vcpu] {
            assert!(!default_filter(k).unwrap().is_empty());
        }
        let dir = std::env::temp_dir().join(format!("vmm-seccomp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        let one = r#"{"default_action": "kill_process", "filter_action": "allow",
                      "filter": [{"syscall": "read"}, {"syscall": "ioctl",
                                  "args": [{"index": 1, "type": "dword", "op": "eq", "val": 44672}]}]}"#;
        std::fs::write(
            &good,
            format!(r#"{{"api": {one}, "vmm": {one}, "vcpu": {one}}}"#),
        )
        .unwrap();
        assert_eq!(filters_from_json(&good).unwrap().len(), 3);
        let partial = dir.join("partial.json");
        std::fs::write(&partial, format!(r#"{{"api": {one}}}"#)).unwrap();
        assert!(matches!(
            filters_from_json(&partial),
            Err(SeccompError::Missing("vmm"))
        ));
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"api": {"default_action": "explode"}}"#).unwrap();
        assert!(matches!(
            filters_from_json(&bad),
            Err(SeccompError::Compile(_))
        ));
        assert!(matches!(
            filters_from_json(&dir.join("none.json")),
            Err(SeccompError::File(..))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Runs the test `name` of this module again in a child process with `env` set to
    /// `value` (the child takes the branch that applies a filter, which may kill it), and
    /// returns how the child ended.
    fn rerun_in_child(
        name: &str,
        env: &str,
        value: impl AsRef<std::ffi::OsStr>,
    ) -> std::process::Output {
        let exe = std::env::current_exe().unwrap();
        std::process::Command::new(exe)
            .args(["--exact", &format!("seccomp::tests::{name}"), "--nocapture"])
            .env(env, value)
            .output()
            .unwrap()
    }

    #[test]
    fn a_filtered_thread_is_killed_on_a_forbidden_syscall() {
        // Run in a child process: the default action kills the whole process.
        if std::env::var_os("VMM_SECCOMP_CHILD").is_some() {
            seccompiler::apply_filter(&default_filter(ThreadKind::Vcpu).unwrap()).unwrap();
            // SAFETY: a plain syscall; the filter must kill us before it returns.
            unsafe { libc::syscall(libc::SYS_getppid) };
            std::process::exit(0);
        }
        let st = rerun_in_child(
            "a_filtered_thread_is_killed_on_a_forbidden_syscall",
            "VMM_SECCOMP_CHILD",
            "1",
        );
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.status.signal(), Some(libc::SIGSYS), "{st:?}");
    }

    /// What a vCPU thread runs of the virtio devices (the guest's MMIO: Linux's probe resets
    /// a device, then brings it to DRIVER_OK) passes the vCPU filter. A device whose reset
    /// armed a timer (the vsock muxer once did: the vmm died at the guest's first probe,
    /// which only a nested KVM boot showed) kills the child with SIGSYS.
    #[test]
    fn vcpu_thread_device_calls_pass_the_vcpu_filter() {
        use std::path::Path;
        use std::sync::{Arc, Mutex};
        use vmm_devices::block::{Block, BlockConfig, IoEngine};
        use vmm_devices::rate_limiter::RateLimiterConfig;
        use vmm_devices::rng::Rng;
        use vmm_devices::test_utils::{bring_up, memory, reset, write_mem, Driver};
        use vmm_devices::transport::MmioTransport;
        use vmm_devices::vsock::{Vsock, VsockConfig};
        if let Some(dir) = std::env::var_os("VMM_SECCOMP_DEVICES_CHILD") {
            let mem = memory();
            let uds = std::path::Path::new(&dir).join("v.sock");
            let cfg = VsockConfig {
                guest_cid: 3,
                uds_path: uds,
            };
            let vsock = Arc::new(Mutex::new(Vsock::new(&cfg).unwrap()));
            let rng = Arc::new(Mutex::new(Rng::new(&RateLimiterConfig::default()).unwrap()));
            let vq: Vec<_> = (0..3)
                .map(|i| Driver::new(&mem, 0x4000 * i, 64).layout())
                .collect();
            let rq = [Driver::new(&mem, 0xc000, 64).layout()];
            let mut vt = MmioTransport::new(mem.clone(), vsock).unwrap();
            let mut rt = MmioTransport::new(mem.clone(), rng).unwrap();
            // An Async block device with reads in flight when the guest resets it.
            let disk = Path::new(&dir).join("disk");
            std::fs::write(&disk, vec![7u8; 4096]).unwrap();
            let block = Arc::new(Mutex::new(
                Block::new(&BlockConfig {
                    drive_id: "d".into(),
                    path_on_host: disk,
                    io_engine: IoEngine::Async,
                    ..Default::default()
                })
                .unwrap(),
            ));
            let mut bd = Driver::new(&mem, 0x10000, 64);
            let bq = [bd.layout()];
            let mut bt = MmioTransport::new(mem.clone(), block.clone()).unwrap();
            assert!(bring_up(&mut bt, &bq));
            let hdr = 0x20_0000;
            write_mem(&mem, hdr, &[0; 16]);
            for i in 0..8 {
                bd.push(&[
                    (hdr, 16, false),
                    (0x30_0000 + 512 * i, 512, true),
                    (0x40_0000 + i, 1, true),
                ]);
            }
            block.lock().unwrap().process_queue();
            assert_eq!(block.lock().unwrap().in_flight(), 8);
            seccompiler::apply_filter(&default_filter(ThreadKind::Vcpu).unwrap()).unwrap();
            for _ in 0..2 {
                for (t, q) in [(&mut vt, &vq[..]), (&mut rt, &rq[..]), (&mut bt, &bq[..])] {
                    reset(t);
                    assert!(bring_up(t, q), "DRIVER_OK refused");
                }
            }
            std::process::exit(0);
        }
        let dir = std::env::temp_dir().join(format!("vmm-seccomp-dev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = rerun_in_child(
            "vcpu_thread_device_calls_pass_the_vcpu_filter",
            "VMM_SECCOMP_DEVICES_CHILD",
            &dir,
        );
        let _ = std::fs::remove_dir_all(&dir);
        use std::os::unix::process::ExitStatusExt;
        assert_ne!(
            out.status.signal(),
            Some(libc::SIGSYS),
            "a device call made a syscall the vCPU filter forbids: {out:?}"
        );
        assert!(out.status.success(), "{out:?}");
    }

    /// What the event loop runs of a block device passes the vmm filter, on both engines:
    /// read, write, flush and discard requests, io_uring submissions and completions, and
    /// dropping a device with requests in flight.
    #[test]
    fn vmm_thread_block_io_passes_the_vmm_filter() {
        use std::sync::{Arc, Mutex};
        use vmm_devices::block::{Block, BlockConfig, IoEngine};
        use vmm_devices::test_utils::{activate, memory, write_mem, Driver};
        if let Some(dir) = std::env::var_os("VMM_SECCOMP_BLOCK_CHILD") {
            let mem = memory();
            let mut devs = Vec::new();
            let mut drivers = Vec::new();
            for (i, engine) in [IoEngine::Sync, IoEngine::Async].into_iter().enumerate() {
                let disk = std::path::Path::new(&dir).join(format!("disk{i}"));
                std::fs::write(&disk, vec![7u8; 1 << 20]).unwrap();
                let dev = Arc::new(Mutex::new(
                    Block::new(&BlockConfig {
                        drive_id: "d".into(),
                        path_on_host: disk,
                        io_engine: engine,
                        ..Default::default()
                    })
                    .unwrap(),
                ));
                assert_eq!(dev.lock().unwrap().io_engine(), engine);
                let drv = Driver::new(&mem, 0x8000 * i as u64, 64);
                let t = activate(&mem, dev.clone(), &[&drv]);
                devs.push((dev, t));
                drivers.push(drv);
            }
            install_sigsys_handler().unwrap();
            seccompiler::apply_filter(&default_filter(ThreadKind::Vmm).unwrap()).unwrap();
            let (hdr, data, status) = (0x20_0000u64, 0x30_0000u64, 0x40_0000u64);
            // read, write, flush, discard (sectors 4..12).
            let mut seg = 4u64.to_le_bytes().to_vec();
            seg.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 0]);
            write_mem(&mem, data + 0x10000, &seg);
            for (k, t) in [0u32, 1, 4, 11].into_iter().enumerate() {
                let h = hdr + 16 * k as u64;
                let mut b = t.to_le_bytes().to_vec();
                b.extend_from_slice(&[0; 12]);
                write_mem(&mem, h, &b);
            }
            for (n, ((dev, _), drv)) in devs.iter().zip(drivers.iter_mut()).enumerate() {
                let st = status + 16 * n as u64;
                drv.push(&[(hdr, 16, false), (data, 4096, true), (st, 1, true)]);
                drv.push(&[
                    (hdr + 16, 16, false),
                    (data, 4096, false),
                    (st + 1, 1, true),
                ]);
                drv.push(&[(hdr + 32, 16, false), (st + 2, 1, true)]);
                drv.push(&[
                    (hdr + 48, 16, false),
                    (data + 0x10000, 16, false),
                    (st + 3, 1, true),
                ]);
                dev.lock().unwrap().process_queue();
                for _ in 0..1000 {
                    if drv.used_idx() == 4 {
                        break;
                    }
                    let mut d = dev.lock().unwrap();
                    if let Some(e) = d.completion_event() {
                        let mut p = libc::pollfd {
                            fd: std::os::fd::AsRawFd::as_raw_fd(e),
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // SAFETY: one valid pollfd.
                        unsafe { libc::poll(&mut p, 1, 100) };
                    }
                    d.complete();
                }
                assert_eq!(drv.used_idx(), 4, "engine {n}");
                let mut s = [0u8; 4];
                vm_memory::Bytes::read_slice(&mem, &mut s, vm_memory::GuestAddress(st)).unwrap();
                assert_eq!(s, [0; 4], "engine {n}: statuses");
            }
            // Dropped with requests in flight: the Async engine waits for them.
            let drv = &mut drivers[1];
            for _ in 0..8 {
                drv.push(&[(hdr, 16, false), (data, 4096, true), (status + 32, 1, true)]);
            }
            devs[1].0.lock().unwrap().process_queue();
            drop(devs);
            std::process::exit(0);
        }
        let dir = std::env::temp_dir().join(format!("vmm-seccomp-blk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = rerun_in_child(
            "vmm_thread_block_io_passes_the_vmm_filter",
            "VMM_SECCOMP_BLOCK_CHILD",
            &dir,
        );
        let _ = std::fs::remove_dir_all(&dir);
        use std::os::unix::process::ExitStatusExt;
        assert_ne!(
            out.status.signal(),
            Some(libc::SIGSYS),
            "block I/O made a syscall the vmm filter forbids: {out:?}"
        );
        assert!(out.status.success(), "{out:?}");
    }

    #[test]
    fn a_forbidden_syscall_is_named_on_stderr_with_the_configured_handler() {
        if std::env::var_os("VMM_SECCOMP_HANDLER_CHILD").is_some() {
            configure(false, None).unwrap();
            apply(ThreadKind::Vcpu).unwrap();
            // SAFETY: a plain syscall; the handler must end the process before it returns.
            unsafe { libc::syscall(libc::SYS_getppid) };
            std::process::exit(0);
        }
        let out = rerun_in_child(
            "a_forbidden_syscall_is_named_on_stderr_with_the_configured_handler",
            "VMM_SECCOMP_HANDLER_CHILD",
            "1",
        );
        assert_eq!(out.status.code(), Some(BAD_SYSCALL_EXIT), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "forbidden syscall {} on a vcpu thread",
                libc::SYS_getppid
            )),
            "{stderr}"
        );
    }

    #[test]
    fn bad_syscall_messages_format_numbers() {
        let mut buf = [0u8; 96];
        let n = bad_syscall_message(0, Some(ThreadKind::Api), &mut buf);
        assert_eq!(
            &buf[..n],
            b"vmm: seccomp: forbidden syscall 0 on an api thread, exiting\n"
        );
        let n = bad_syscall_message(-1, None, &mut buf);
        assert_eq!(
            &buf[..n],
            b"vmm: seccomp: forbidden syscall -1 on an unfiltered thread, exiting\n"
        );
        let n = bad_syscall_message(435, Some(ThreadKind::Vcpu), &mut buf);
        assert_eq!(
            &buf[..n],
            b"vmm: seccomp: forbidden syscall 435 on a vcpu thread, exiting\n"
        );
    }
}
