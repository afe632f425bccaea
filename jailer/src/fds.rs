//! File descriptors: make sure stdio is open, close everything else inherited.

use crate::error::{Error, Result, Step};

/// Opens /dev/null on any of fds 0, 1, 2 that is closed, so that files the jailer opens
/// later can never land on them.
pub fn ensure_stdio() -> Result<()> {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the descriptor's flags; no memory is involved.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // SAFETY: the path is a valid NUL-terminated string; open returns a new fd
            // (the lowest free one, which is `fd`) or -1.
            let got = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if got != fd {
                return Err(Error::new(
                    Step::Stdio,
                    "/dev/null",
                    format!("cannot open it as fd {fd}"),
                ));
            }
        }
    }
    Ok(())
}

fn close_range(first: u32, flags: u32) -> std::io::Result<()> {
    // SAFETY: close_range only closes (or marks close-on-exec) descriptors of this
    // process; the jailer holds no Rust objects owning fds >= `first` when it calls this
    // with flags 0 (it runs first thing in main), and with CLOSE_RANGE_CLOEXEC nothing is
    // closed before exec.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Fallback for kernels without close_range: the fds listed in /proc/self/fd.
fn listed_fds() -> Result<Vec<i32>> {
    let dir = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| Error::new(Step::CloseFds, "/proc/self/fd", e))?;
    Ok(dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect())
}

/// Closes every inherited descriptor but stdio. Called first thing, before the jailer
/// opens anything itself.
pub fn close_inherited() -> Result<()> {
    if close_range(3, 0).is_ok() {
        return Ok(());
    }
    for fd in listed_fds()? {
        // SAFETY: closing a raw fd that nothing in this process owns as a Rust object
        // (this runs before the jailer opens any file); EBADF for the directory's own
        // fd, already closed, is harmless.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Marks every descriptor but stdio close-on-exec: the vmm starts with 0, 1 and 2 only.
pub fn cloexec_all_but_stdio() -> Result<()> {
    if close_range(3, libc::CLOSE_RANGE_CLOEXEC).is_ok() {
        return Ok(());
    }
    // Without close_range (and after pivot_root, without /proc) fall back to a scan.
    for fd in 3..65536 {
        // SAFETY: F_SETFD with FD_CLOEXEC only changes a descriptor flag (EBADF if closed).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}
