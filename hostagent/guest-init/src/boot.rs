//! PID 1 duties inside the microVM: early mounts, clock, hostname, entropy, task storage,
//! the boot marker, power-off.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

/// A boot step that failed; the text is what PID 1 prints on the console.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("mkdir {}: {source}", path.display())]
    Mkdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `what` is the file system type, or the device mounted.
    #[error("mount {what} on {}: {source}", target.display())]
    Mount {
        what: String,
        target: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("tmpfs on {}: {source}", target.display())]
    MountTmpfs {
        target: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("reading /proc/self/mountinfo: {0}")]
    ReadMountinfo(#[source] io::Error),
    #[error("/proc/self/exe: {0}")]
    SelfExe(#[source] io::Error),
    #[error("copying {} to {to}: {source}", exe.display())]
    CopySelf {
        exe: PathBuf,
        to: String,
        #[source]
        source: io::Error,
    },
    #[error("unmounting /proc: {0}")]
    UnmountProc(#[source] Errno),
    #[error("chdir {dir}: {source}")]
    Chdir {
        dir: String,
        #[source]
        source: Errno,
    },
    #[error("moving {from} onto /: {source}")]
    MoveRoot {
        from: String,
        #[source]
        source: Errno,
    },
    #[error("chroot: {0}")]
    Chroot(#[source] Errno),
    #[error("exec /init on the new root: {0}")]
    ExecNewRoot(#[source] io::Error),
    #[error("clock_settime: {0}")]
    SetClock(#[source] Errno),
    #[error("/dev/urandom: {0}")]
    OpenUrandom(#[source] io::Error),
    #[error("RNDADDENTROPY: {0}")]
    AddEntropy(#[source] io::Error),
}

fn mkdir(path: impl AsRef<Path>) -> Result<(), BootError> {
    let path = path.as_ref();
    fs::create_dir_all(path).map_err(|source| BootError::Mkdir {
        path: path.to_path_buf(),
        source,
    })
}

/// Guest-physical address of the vmm's boot-timer device: a write marks "first container
/// process started" for the boot benchmark.
pub const BOOT_TIMER_ADDR: u64 = 0xc000_0000;

fn log(msg: &str) {
    eprintln!("guest-init: {msg}");
}

fn try_mount(
    src: &str,
    target: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), BootError> {
    mkdir(target)?;
    match mount(Some(src), target, Some(fstype), flags, data) {
        Ok(()) => Ok(()),
        // Already mounted (e.g. devtmpfs by CONFIG_DEVTMPFS_MOUNT).
        Err(Errno::EBUSY) => Ok(()),
        Err(source) => Err(BootError::Mount {
            what: fstype.to_string(),
            target: target.into(),
            source,
        }),
    }
}

/// Whether `/` is the initramfs itself (`rootfs` in /proc/self/mountinfo, which must be
/// mounted).
fn root_is_rootfs() -> Result<bool, BootError> {
    let info = fs::read_to_string("/proc/self/mountinfo").map_err(BootError::ReadMountinfo)?;
    // "<id> <parent> <maj:min> <root> <mount point> <options> ... - <fstype> <source> ..."
    let fstype = info
        .lines()
        .rev()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .and_then(|l| l.split(" - ").nth(1))
        .and_then(|rest| rest.split(' ').next());
    Ok(fstype == Some("rootfs"))
}

/// Moves PID 1 off the initramfs. pivot_root(2) refuses to move away from `rootfs` (the
/// initial mount has no parent), and every container is entered with pivot_root, so when
/// `/` is the initramfs: copy this binary onto a tmpfs, remove it from the initramfs (its
/// memory goes back once we exec), move the tmpfs over `/`, chroot into it and exec the
/// copy with the same arguments. The exec'd copy finds `/` on tmpfs and carries on.
/// Returns `Ok(())` when there is nothing to do; on success it does not return.
pub fn leave_initramfs() -> Result<(), BootError> {
    let ns = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    try_mount("proc", "/proc", "proc", ns, None)?;
    if !root_is_rootfs()? {
        return Ok(());
    }
    let new = "/.root";
    try_mount("tmpfs", new, "tmpfs", MsFlags::empty(), Some("mode=0755"))?;
    for d in ["dev", "proc", "sys", "run", "tmp", "etc"] {
        mkdir(Path::new(new).join(d))?;
    }
    let exe = fs::read_link("/proc/self/exe").map_err(BootError::SelfExe)?;
    let to = format!("{new}/init");
    if let Err(source) = fs::copy("/proc/self/exe", &to) {
        return Err(BootError::CopySelf { exe, to, source });
    }
    // Only the initramfs copy: the file we run from (it may not be /init with rdinit=).
    if let Err(e) = fs::remove_file(&exe) {
        log(&format!(
            "cannot remove {} from the initramfs: {e}",
            exe.display()
        ));
    }
    nix::mount::umount2("/proc", nix::mount::MntFlags::MNT_DETACH)
        .map_err(BootError::UnmountProc)?;
    chdir(new)?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|source| {
        BootError::MoveRoot {
            from: new.into(),
            source,
        }
    })?;
    nix::unistd::chroot(".").map_err(BootError::Chroot)?;
    chdir("/")?;
    let err = std::process::Command::new("/init")
        .args(std::env::args_os().skip(1))
        .arg0(std::env::args_os().next().unwrap_or_else(|| "/init".into()))
        .exec();
    Err(BootError::ExecNewRoot(err))
}

fn chdir(dir: &str) -> Result<(), BootError> {
    nix::unistd::chdir(dir).map_err(|source| BootError::Chdir {
        dir: dir.into(),
        source,
    })
}

/// Mounts the pseudo file systems PID 1 needs. /proc, /sys, /dev and /run are required;
/// the rest is logged on failure.
pub fn early_mounts() -> Result<(), BootError> {
    let ns = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    try_mount("proc", "/proc", "proc", ns, None)?;
    try_mount("sysfs", "/sys", "sysfs", ns, None)?;
    try_mount(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    )?;
    try_mount(
        "tmpfs",
        "/run",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )?;
    for (src, target, fstype, flags, data) in [
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("mode=0620,ptmxmode=0666"),
        ),
        (
            "shm",
            "/dev/shm",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
        ),
        ("cgroup2", "/sys/fs/cgroup", "cgroup2", ns, None),
    ] {
        if let Err(e) = try_mount(src, target, fstype, flags, data) {
            log(&e.to_string());
        }
    }
    Ok(())
}

/// Makes sure fds 0-2 are open (the kernel leaves them closed when it could not open
/// /dev/console), so that no socket or pipe ends up as a child's stdio by accident.
pub fn ensure_stdio() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the fd table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        let f = fs::OpenOptions::new()
            .read(fd == 0)
            .write(fd != 0)
            .open("/dev/console")
            .or_else(|_| {
                fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
            });
        if let Ok(f) = f {
            let raw = std::os::fd::IntoRawFd::into_raw_fd(f);
            if raw != fd {
                // SAFETY: duplicating an fd we own onto a closed slot, then closing ours.
                unsafe {
                    libc::dup2(raw, fd);
                    libc::close(raw);
                }
            }
        }
    }
}

/// Sets the wall clock (a microVM has no battery-backed clock).
pub fn set_clock(ms: u64) -> Result<(), BootError> {
    let ts = nix::sys::time::TimeSpec::new((ms / 1000) as i64, ((ms % 1000) * 1_000_000) as i64);
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts).map_err(BootError::SetClock)
}

/// Credits `seed` to the kernel's entropy pool (RNDADDENTROPY), so getrandom() does not
/// block early even without virtio-rng.
pub fn seed_entropy(seed: &[u8]) -> Result<(), BootError> {
    if seed.is_empty() {
        return Ok(());
    }
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info = Vec::with_capacity(8 + seed.len() + 3);
    info.extend_from_slice(&((seed.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(seed.len() as i32).to_ne_bytes());
    info.extend_from_slice(seed);
    info.resize(8 + seed.len().div_ceil(4) * 4, 0);
    let f = fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")
        .map_err(BootError::OpenUrandom)?;
    const RNDADDENTROPY: libc::c_ulong = 0x4008_5203; // _IOW('R', 0x03, int[2])
                                                      // SAFETY: the buffer holds a complete rand_pool_info with buf_size bytes of payload.
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            RNDADDENTROPY as _,
            info.as_ptr(),
        )
    };
    if r != 0 {
        return Err(BootError::AddEntropy(io::Error::last_os_error()));
    }
    Ok(())
}

/// Mounts a task block device (ext4) at `target`, or a tmpfs there when there is none.
pub fn mount_storage(device: Option<&str>, target: &Path) -> Result<(), BootError> {
    mkdir(target)?;
    match device {
        Some(d) => mount(
            Some(d),
            target,
            Some("ext4"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None::<&str>,
        )
        .map_err(|source| BootError::Mount {
            what: d.into(),
            target: target.into(),
            source,
        }),
        None => mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        )
        .map_err(|source| BootError::MountTmpfs {
            target: target.into(),
            source,
        }),
    }
}

/// Writes to the boot-timer device through /dev/mem (best effort: needs CONFIG_DEVMEM).
pub fn boot_marker() {
    let Ok(f) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mem")
    else {
        log("boot marker: /dev/mem unavailable");
        return;
    };
    // SAFETY: maps one page of the device at its fixed physical address; the mapping is
    // used for a single volatile byte write and unmapped.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_WRITE,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&f),
            BOOT_TIMER_ADDR as libc::off_t,
        );
        if p == libc::MAP_FAILED {
            log(&format!(
                "boot marker: mmap: {}",
                std::io::Error::last_os_error()
            ));
            return;
        }
        std::ptr::write_volatile(p.cast::<u8>(), 1);
        libc::munmap(p, 4096);
    }
}

/// Flushes file systems and resets the VM. We use RB_AUTOBOOT, not RB_POWER_OFF: a microVM
/// has no ACPI to power off through, so a power-off would just halt the vCPUs, while a
/// reboot (with `reboot=k` on the kernel command line) resets through the i8042 controller,
/// which makes the vmm exit cleanly.
///
/// Only PID 1 resets: `guest-init boot` run as an ordinary process just exits. (PID 1 of a
/// child PID namespace, as in the tests, only ends its namespace: the kernel turns reboot()
/// there into SIGHUP for the namespace's init.)
pub fn power_off() -> ! {
    nix::unistd::sync();
    if std::process::id() != 1 {
        log("not PID 1: exiting instead of resetting");
        std::process::exit(0);
    }
    let e = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    log(&format!("reboot failed: {e:?}"));
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
