//! Drops to the jail's uid/gid with no capability left in any set, and no_new_privs.

use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

use crate::error::{Context, Error, Result, Step};

// Securebits (linux/securebits.h): uid 0 gets no capabilities on exec, capabilities are
// never kept across setuid, ambient capabilities can't be raised; all locked.
const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;
const SECBIT_NO_CAP_AMBIENT_RAISE: libc::c_ulong = 1 << 6;
const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: libc::c_ulong = 1 << 7;

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn prctl(what: &str, option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> Result<()> {
    // SAFETY: the prctl options used here take integer arguments only; no pointers.
    let r = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if r == -1 {
        return Err(Error::new(
            Step::Privileges,
            what,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Empties the effective, permitted and inheritable capability sets.
fn clear_capsets() -> Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads a v3 header and two data structs, both valid for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if r != 0 {
        return Err(Error::new(
            Step::Privileges,
            "capset",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Empties the bounding set (needs CAP_SETPCAP, so before the uid changes).
fn clear_bounding_set() -> Result<()> {
    for cap in 0..64 {
        // SAFETY: PR_CAPBSET_READ takes an integer capability number.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        if r == -1 {
            break; // EINVAL: past the last capability this kernel knows
        }
        if r == 1 {
            prctl("PR_CAPBSET_DROP", libc::PR_CAPBSET_DROP, cap, 0)?;
        }
    }
    Ok(())
}

/// Becomes `uid`/`gid` (no supplementary groups) with every capability set empty
/// (effective, permitted, inheritable, ambient, bounding) and no_new_privs set, so that
/// neither exec nor setuid binaries can give privileges back.
pub fn drop_to(uid: u32, gid: u32) -> Result<()> {
    prctl(
        "PR_SET_SECUREBITS",
        libc::PR_SET_SECUREBITS,
        SECBIT_NOROOT
            | SECBIT_NOROOT_LOCKED
            | SECBIT_NO_SETUID_FIXUP_LOCKED
            | SECBIT_KEEP_CAPS_LOCKED
            | SECBIT_NO_CAP_AMBIENT_RAISE
            | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
        0,
    )?;
    prctl(
        "PR_CAP_AMBIENT_CLEAR_ALL",
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    )?;
    clear_bounding_set()?;
    setgroups(&[]).at(Step::Privileges, "setgroups([])")?;
    let g = Gid::from_raw(gid);
    setresgid(g, g, g).at(Step::Privileges, format!("setresgid({gid})"))?;
    let u = Uid::from_raw(uid);
    setresuid(u, u, u).at(Step::Privileges, format!("setresuid({uid})"))?;
    clear_capsets()?;
    prctl("PR_SET_NO_NEW_PRIVS", libc::PR_SET_NO_NEW_PRIVS, 1, 0)?;
    Ok(())
}
