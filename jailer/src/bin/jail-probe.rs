//! jail-probe: run by the jailer's tests as the jailed "vmm". It reports what it can see
//! and do from inside the jail, or tries to break a limit.
//!
//! Uses std only (its own libc declarations), so the tests can build it as a static
//! binary with plain `rustc -C target-feature=+crt-static`: the jail has no libraries.
//!
//! Modes:
//!   report [--host-pid N] [--out PATH] [--wait]   key=value lines, then `end`
//!   alloc MIB                                     allocate and touch MIB MiB
//!   write-file PATH BYTES                         write BYTES bytes to PATH
//!   exit CODE                                     exit with CODE
//!   wait-signal                                   print `ready`, exit 42 on SIGTERM
//!   peer ACTION...                                what this identity may do to others:
//!       kill:PID (kill(PID, 0)), read:PATH, write:PATH (open, never create); one
//!       `ACTION=ok|EPERM|EACCES|ESRCH|...` line each, then `end`
//!
//! Flags before the mode are skipped: the jailer's (`--id=ID`, `--start-time-us=N`, ...)
//! and a vmm's (`--no-api`, `--config-file F`, `--level L`, ...), so a host agent can run
//! the probe in place of its vmm unchanged (e.g. `... --log-limit N wait-signal`).

use std::io::{Read, Write};

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

extern "C" {
    fn getresuid(r: *mut u32, e: *mut u32, s: *mut u32) -> i32;
    fn getresgid(r: *mut u32, e: *mut u32, s: *mut u32) -> i32;
    fn getgroups(size: i32, list: *mut u32) -> i32;
    fn getpid() -> i32;
    fn getppid() -> i32;
    fn getsid(pid: i32) -> i32;
    fn setuid(uid: u32) -> i32;
    fn setgid(gid: u32) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
    fn fcntl(fd: i32, cmd: i32, ...) -> i32;
    fn prctl(option: i32, ...) -> i32;
    fn syscall(num: i64, ...) -> i64;
    fn getrlimit(resource: i32, rlim: *mut [u64; 2]) -> i32;
    fn signal(sig: i32, handler: usize) -> usize;
    fn pause() -> i32;
    fn _exit(code: i32) -> !;
}

extern "C" fn on_sigterm(_sig: i32) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { _exit(42) }
}

const F_GETFD: i32 = 1;
const PR_CAPBSET_READ: i32 = 23;
const PR_GET_NO_NEW_PRIVS: i32 = 39;
const PR_CAP_AMBIENT: i32 = 47;
const PR_CAP_AMBIENT_IS_SET: u64 = 1;
const SYS_CAPGET: i64 = 125;
const RLIMIT_FSIZE: i32 = 1;
const RLIMIT_NOFILE: i32 = 7;

fn errno_name() -> String {
    match std::io::Error::last_os_error().raw_os_error() {
        Some(1) => "EPERM".into(),
        Some(2) => "ENOENT".into(),
        Some(3) => "ESRCH".into(),
        Some(13) => "EACCES".into(),
        Some(22) => "EINVAL".into(),
        Some(n) => format!("errno{n}"),
        None => "unknown".into(),
    }
}

fn report(host_pid: Option<i32>) -> Vec<String> {
    let mut out = Vec::new();
    let (mut r, mut e, mut s) = (0u32, 0u32, 0u32);
    // SAFETY: the pointers are valid for the call.
    unsafe { getresuid(&mut r, &mut e, &mut s) };
    out.push(format!("uid={r},{e},{s}"));
    // SAFETY: as above.
    unsafe { getresgid(&mut r, &mut e, &mut s) };
    out.push(format!("gid={r},{e},{s}"));
    let mut groups = [0u32; 64];
    // SAFETY: the buffer holds 64 entries.
    let n = unsafe { getgroups(64, groups.as_mut_ptr()) };
    let groups: Vec<String> = groups[..n.max(0) as usize]
        .iter()
        .map(u32::to_string)
        .collect();
    out.push(format!("groups={}", groups.join(",")));
    // SAFETY: no arguments / integer arguments only.
    let (pid, ppid, sid) = unsafe { (getpid(), getppid(), getsid(0)) };
    out.push(format!("pid={pid}"));
    out.push(format!("ppid={ppid}"));
    out.push(format!("sid={sid}"));

    let mut root: Vec<String> = match std::fs::read_dir("/") {
        Ok(d) => d
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => vec![format!("error:{e}")],
    };
    root.sort();
    out.push(format!("root={}", root.join(",")));
    for p in ["/proc", "/sys", "/etc", "/usr", "/tmp"] {
        if std::path::Path::new(p).exists() {
            out.push(format!("visible={p}"));
        }
    }

    let mut hdr = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two CapData structs into `data`.
    let rc = unsafe { syscall(SYS_CAPGET, &mut hdr as *mut CapHeader, data.as_mut_ptr()) };
    let join = |f: fn(&CapData) -> u32| (u64::from(f(&data[1])) << 32) | u64::from(f(&data[0]));
    if rc == 0 {
        out.push(format!("cap_eff={:x}", join(|d| d.effective)));
        out.push(format!("cap_prm={:x}", join(|d| d.permitted)));
        out.push(format!("cap_inh={:x}", join(|d| d.inheritable)));
    } else {
        out.push(format!("capget={}", errno_name()));
    }
    let (mut bnd, mut amb) = (0u64, 0u64);
    for cap in 0..64u64 {
        // SAFETY: integer arguments only.
        let b = unsafe { prctl(PR_CAPBSET_READ, cap, 0u64, 0u64, 0u64) };
        if b < 0 {
            break;
        }
        if b == 1 {
            bnd |= 1 << cap;
        }
        // SAFETY: integer arguments only.
        if unsafe { prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0u64, 0u64) } == 1 {
            amb |= 1 << cap;
        }
    }
    out.push(format!("cap_bnd={bnd:x}"));
    out.push(format!("cap_amb={amb:x}"));
    // SAFETY: integer arguments only.
    let nnp = unsafe { prctl(PR_GET_NO_NEW_PRIVS, 0u64, 0u64, 0u64, 0u64) };
    out.push(format!("no_new_privs={nnp}"));

    // SAFETY: F_GETFD only queries flags.
    let fds: Vec<String> = (0..4096)
        .filter(|fd| unsafe { fcntl(*fd, F_GETFD) } != -1)
        .map(|fd: i32| fd.to_string())
        .collect();
    out.push(format!("fds={}", fds.join(",")));
    {
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::io::FromRawFd;
        // SAFETY: fd 0 is open (checked above by the report consumer); ManuallyDrop keeps
        // it open after the metadata call.
        let f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) });
        if let Ok(m) = f.metadata() {
            let rdev = m.rdev();
            out.push(format!(
                "stdin_rdev={}:{}",
                (rdev >> 8) & 0xfff,
                rdev & 0xff
            ));
        }
    }

    // SAFETY: integer arguments only; both must fail for an unprivileged process.
    let su = unsafe { setuid(0) };
    out.push(format!(
        "setuid0={}",
        if su == 0 { "ok".into() } else { errno_name() }
    ));
    // SAFETY: as above.
    let sg = unsafe { setgid(0) };
    out.push(format!(
        "setgid0={}",
        if sg == 0 { "ok".into() } else { errno_name() }
    ));
    if let Some(hp) = host_pid {
        // SAFETY: signal 0 only checks existence and permission.
        let k = unsafe { kill(hp, 0) };
        out.push(format!(
            "kill_host={}",
            if k == 0 { "ok".into() } else { errno_name() }
        ));
    }
    for (name, res) in [("fsize", RLIMIT_FSIZE), ("nofile", RLIMIT_NOFILE)] {
        let mut lim = [0u64; 2];
        // SAFETY: getrlimit writes two u64 into `lim`.
        unsafe { getrlimit(res, &mut lim) };
        out.push(format!("{name}={}", lim[0]));
    }
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    out.push(format!(
        "dev_kvm={}",
        match kvm {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        }
    ));
    let wr = std::fs::write("/not-writable", b"x");
    out.push(format!(
        "write_root={}",
        if wr.is_ok() { "ok" } else { "denied" }
    ));
    out.push("end".into());
    out
}

/// The vmm flags (of this workspace's vmm and Firecracker) that take a separate value.
const VMM_FLAGS_WITH_VALUE: &[&str] = &[
    "--config-file",
    "--level",
    "--serial-out-limit",
    "--log-limit",
    "--api-sock",
    "--log-path",
    "--metrics-path",
    "--seccomp-filter",
];

/// Number of leading flag arguments (with their values) before the mode.
fn leading_flags(args: &[String]) -> usize {
    let mut i = 0;
    while i < args.len() && args[i].starts_with("--") {
        if VMM_FLAGS_WITH_VALUE.contains(&args[i].as_str()) {
            i += 1;
        }
        i += 1;
    }
    i.min(args.len())
}

/// `peer` mode: what this process may do to other processes and files.
fn peer(actions: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for a in actions {
        let res = match a.split_once(':') {
            Some(("kill", pid)) => match pid.parse::<i32>() {
                // SAFETY: signal 0 only checks existence and permission.
                Ok(p) if p > 0 => (unsafe { kill(p, 0) } == 0).then_some(()).ok_or(()),
                _ => {
                    out.push(format!("{a}=bad-pid"));
                    continue;
                }
            },
            Some(("read", path)) => std::fs::File::open(path).map(drop).map_err(drop),
            Some(("write", path)) => std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map(drop)
                .map_err(drop),
            _ => {
                out.push(format!("{a}=bad-action"));
                continue;
            }
        };
        out.push(format!(
            "{a}={}",
            if res.is_ok() {
                "ok".into()
            } else {
                errno_name()
            }
        ));
    }
    out.push("end".into());
    out
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    match args.get(i).and_then(|a| a.parse().ok()) {
        Some(v) => v,
        None => {
            eprintln!("jail-probe: bad or missing argument {i}");
            std::process::exit(2)
        }
    }
}

fn main() {
    // The jailer puts --id=ID --start-time-us=N --start-time-cpu-us=N first.
    let all: Vec<String> = std::env::args().collect();
    let jailer_args: Vec<String> = all[1..1 + leading_flags(&all[1..])].to_vec();
    let args: Vec<String> = std::iter::once(all[0].clone())
        .chain(all[1 + jailer_args.len()..].iter().cloned())
        .collect();
    match args.get(1).map(String::as_str) {
        Some("report") => {
            let mut host_pid = None;
            let mut out_path = None;
            let mut wait = false;
            let mut i = 2;
            while i < args.len() {
                match args[i].as_str() {
                    "--host-pid" => {
                        host_pid = Some(arg(&args, i + 1));
                        i += 1;
                    }
                    "--out" => {
                        out_path = Some(arg::<String>(&args, i + 1));
                        i += 1;
                    }
                    "--wait" => wait = true,
                    other => {
                        eprintln!("jail-probe: unknown flag {other}");
                        std::process::exit(2)
                    }
                }
                i += 1;
            }
            let mut lines = vec![format!("jailer_args={}", jailer_args.join(" "))];
            lines.extend(report(host_pid));
            let text = lines.join("\n") + "\n";
            match out_path {
                Some(p) => {
                    if let Err(e) = std::fs::write(&p, &text) {
                        eprintln!("jail-probe: {p}: {e}");
                        std::process::exit(3)
                    }
                }
                None => {
                    let mut so = std::io::stdout();
                    let _ = so.write_all(text.as_bytes());
                    let _ = so.flush();
                }
            }
            if wait {
                let mut sink = Vec::new();
                let _ = std::io::stdin().read_to_end(&mut sink);
            }
        }
        Some("alloc") => {
            let mib: usize = arg(&args, 2);
            let mut chunks = Vec::with_capacity(mib);
            for i in 0..mib {
                chunks.push(vec![(i % 251) as u8 + 1; 1 << 20]);
            }
            let sum: u64 = chunks.iter().map(|c| u64::from(c[c.len() / 2])).sum();
            println!("allocated={mib} check={sum}");
        }
        Some("write-file") => {
            let path: String = arg(&args, 2);
            let bytes: u64 = arg(&args, 3);
            let mut f = match std::fs::File::create(&path) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("jail-probe: {path}: {e}");
                    std::process::exit(3)
                }
            };
            let block = vec![0x5au8; 64 * 1024];
            let mut written = 0u64;
            while written < bytes {
                let n = (bytes - written).min(block.len() as u64) as usize;
                if let Err(e) = f.write_all(&block[..n]) {
                    println!("write_error={e} written={written}");
                    std::process::exit(4)
                }
                written += n as u64;
            }
            println!("written={written}");
        }
        Some("wait-signal") => {
            // SAFETY: installs a handler that only calls _exit.
            unsafe { signal(15, on_sigterm as extern "C" fn(i32) as usize) };
            println!("ready");
            let _ = std::io::stdout().flush();
            loop {
                // SAFETY: pause only waits for a signal.
                unsafe { pause() };
            }
        }
        Some("exit") => std::process::exit(arg(&args, 2)),
        Some("peer") => {
            let text = peer(&args[2..]).join("\n") + "\n";
            let mut so = std::io::stdout();
            let _ = so.write_all(text.as_bytes());
            let _ = so.flush();
        }
        _ => {
            eprintln!(
                "usage: jail-probe report|alloc MIB|write-file PATH BYTES|exit CODE|wait-signal|peer ACTION..."
            );
            std::process::exit(2)
        }
    }
}
