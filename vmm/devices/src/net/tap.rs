//! A tap device opened through /dev/net/tun with virtio-net headers.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;

/// Tap offload flags (TUN_F_*): what the reader of the tap (the guest) accepts.
pub mod offload {
    /// Partial checksums.
    pub const CSUM: u32 = 0x01;
    /// TCP segmentation over IPv4.
    pub const TSO4: u32 = 0x02;
    /// TCP segmentation over IPv6.
    pub const TSO6: u32 = 0x04;
    /// TSO with ECN.
    pub const TSO_ECN: u32 = 0x08;
    /// UDP fragmentation offload.
    pub const UFO: u32 = 0x10;
}

/// Errors opening or configuring a tap.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The interface name does not fit in IFNAMSIZ or has a NUL.
    #[error("invalid tap name {0:?}")]
    InvalidName(String),
    /// Opening /dev/net/tun failed.
    #[error("cannot open /dev/net/tun: {0}")]
    OpenTun(std::io::Error),
    /// An ioctl on the tap failed.
    #[error("{0} on tap {1}: {2}")]
    Ioctl(&'static str, String, std::io::Error),
}

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

/// An open tap queue (non-blocking).
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Attaches to (or, as root, creates) the tap `name` with IFF_TAP | IFF_NO_PI |
    /// IFF_VNET_HDR and a 12-byte virtio-net header (virtio 1.x layout).
    pub fn open(name: &str) -> Result<Tap, TapError> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= 16 || bytes.contains(&0) {
            return Err(TapError::InvalidName(name.to_string()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(TapError::OpenTun)?;
        let mut req = IfReq {
            name: [0; 16],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        req.name[..bytes.len()].copy_from_slice(bytes);
        // SAFETY: TUNSETIFF reads and writes an ifreq; `req` is a valid, properly sized one
        // that outlives the call, and the fd is our open tun file.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return Err(TapError::Ioctl("TUNSETIFF", name.to_string(), e));
        }
        let end = req.name.iter().position(|&b| b == 0).unwrap_or(16);
        let tap = Tap {
            file,
            name: String::from_utf8_lossy(&req.name[..end]).into_owned(),
        };
        let hdr: libc::c_int = super::VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, valid for the call.
        let r = unsafe { libc::ioctl(tap.file.as_raw_fd(), TUNSETVNETHDRSZ, &hdr) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return Err(TapError::Ioctl("TUNSETVNETHDRSZ", tap.name, e));
        }
        Ok(tap)
    }

    /// Sets the offloads (TUN_F_* from [`offload`]) the guest accepts on receive.
    pub fn set_offload(&self, flags: u32) -> Result<(), TapError> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is passed.
        let r = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                TUNSETOFFLOAD,
                libc::c_ulong::from(flags),
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return Err(TapError::Ioctl("TUNSETOFFLOAD", self.name.clone(), e));
        }
        Ok(())
    }

    /// The interface name the kernel gave.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame (virtio-net header first).
    pub fn read_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }

    /// Writes one frame (virtio-net header first).
    pub fn write_frame(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
