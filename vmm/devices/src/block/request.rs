//! Parsing and executing one virtio-block request from an untrusted descriptor chain.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
};
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryBackend};

/// Bytes per sector, as virtio-block counts them.
pub const SECTOR_SIZE: u64 = 512;
const HEADER_LEN: u32 = 16;
/// Largest data payload accepted in one request (the guest never needs more).
pub const MAX_DATA_LEN: u64 = 64 << 20;
/// Most sectors one discard segment may cover (`max_discard_sectors` in the config space).
pub const MAX_DISCARD_SECTORS: u32 = u32::MAX >> 9;
/// Discard segments per request (`max_discard_seg`).
pub const MAX_DISCARD_SEG: u32 = 1;
/// Size of one `struct virtio_blk_discard_write_zeroes`.
const DISCARD_SEG_LEN: u64 = 16;

/// What the request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    /// Read sectors into guest buffers.
    In,
    /// Write guest buffers to sectors.
    Out,
    /// fsync the backing file.
    Flush,
    /// Punch a hole in the backing file (`fallocate(PUNCH_HOLE)`).
    Discard,
    /// Return the device serial.
    GetId,
    /// Anything else (answered VIRTIO_BLK_S_UNSUPP).
    Unsupported(u32),
}

/// Why a chain is not a well-formed request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Fewer than two descriptors (header and status).
    #[error("chain too short")]
    TooShort,
    /// Header descriptor is write-only, short, or not in guest memory.
    #[error("bad request header")]
    BadHeader,
    /// Status descriptor is read-only, empty, or not in guest memory.
    #[error("bad status descriptor")]
    BadStatus,
    /// A data descriptor has the wrong direction for the request.
    #[error("data descriptor has the wrong direction")]
    WrongDirection,
    /// A data descriptor is not in guest memory.
    #[error("data descriptor outside guest memory")]
    OutOfMemory,
    /// Data length not a multiple of the sector size, or absurdly large.
    #[error("bad data length {0}")]
    BadLength(u64),
}

/// A parsed request. The status address is known even when parsing failed later
/// (see [`Parsed::status`]), so the guest can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Request type.
    pub kind: RequestType,
    /// First sector.
    pub sector: u64,
    /// Data buffers (guest address, length) in order.
    pub data: Vec<(GuestAddress, u32)>,
    /// Sum of the data lengths.
    pub data_len: u64,
    /// Where the one-byte status goes.
    pub status: GuestAddress,
}

/// Result of parsing: the request, or an error plus the status address when one was found.
#[derive(Debug)]
pub struct Parsed {
    /// The request, or why it was refused.
    pub request: Result<Request, ParseError>,
    /// Address of a usable status byte, if the chain has one.
    pub status: Option<GuestAddress>,
}

fn in_memory<M: GuestMemoryBackend>(mem: &M, d: &SplitDescriptor) -> bool {
    mem.check_range(d.addr(), d.len() as usize)
}

/// Parses a chain. Never panics on hostile input; the chain iterator already bounds loops
/// to the queue size.
pub fn parse<M, T>(chain: DescriptorChain<T>, mem: &M) -> Parsed
where
    M: GuestMemoryBackend,
    T: Deref,
    T::Target: GuestMemory,
{
    let descs: Vec<SplitDescriptor> = chain.collect();
    let status = descs
        .last()
        .filter(|d| descs.len() >= 2 && d.is_write_only() && d.len() >= 1)
        .filter(|d| mem.check_range(d.addr(), 1))
        .map(|d| d.addr());
    Parsed {
        request: parse_descs(&descs, mem, status),
        status,
    }
}

fn parse_descs<M: GuestMemoryBackend>(
    descs: &[SplitDescriptor],
    mem: &M,
    status: Option<GuestAddress>,
) -> Result<Request, ParseError> {
    if descs.len() < 2 {
        return Err(ParseError::TooShort);
    }
    let hdr = &descs[0];
    if hdr.is_write_only() || hdr.len() < HEADER_LEN || !in_memory(mem, hdr) {
        return Err(ParseError::BadHeader);
    }
    let status = status.ok_or(ParseError::BadStatus)?;
    let raw_type: u32 = mem
        .read_obj(hdr.addr())
        .map_err(|_| ParseError::BadHeader)?;
    let sector_addr = hdr.addr().checked_add(8).ok_or(ParseError::BadHeader)?;
    let sector: u64 = mem
        .read_obj(sector_addr)
        .map_err(|_| ParseError::BadHeader)?;
    let kind = match u32::from_le(raw_type) {
        VIRTIO_BLK_T_IN => RequestType::In,
        VIRTIO_BLK_T_OUT => RequestType::Out,
        VIRTIO_BLK_T_FLUSH => RequestType::Flush,
        VIRTIO_BLK_T_GET_ID => RequestType::GetId,
        VIRTIO_BLK_T_DISCARD => RequestType::Discard,
        t => RequestType::Unsupported(t),
    };
    let mut data = Vec::new();
    let mut data_len = 0u64;
    for d in &descs[1..descs.len() - 1] {
        let want_write = matches!(kind, RequestType::In | RequestType::GetId);
        if matches!(
            kind,
            RequestType::In | RequestType::Out | RequestType::GetId | RequestType::Discard
        ) && d.is_write_only() != want_write
        {
            return Err(ParseError::WrongDirection);
        }
        if !in_memory(mem, d) {
            return Err(ParseError::OutOfMemory);
        }
        data_len += u64::from(d.len());
        if data_len > MAX_DATA_LEN {
            return Err(ParseError::BadLength(data_len));
        }
        data.push((d.addr(), d.len()));
    }
    if matches!(kind, RequestType::In | RequestType::Out) && data_len % SECTOR_SIZE != 0 {
        return Err(ParseError::BadLength(data_len));
    }
    if kind == RequestType::Discard
        && (data.len() != 1 || data_len != DISCARD_SEG_LEN * u64::from(MAX_DISCARD_SEG))
    {
        return Err(ParseError::BadLength(data_len));
    }
    Ok(Request {
        kind,
        sector: u64::from_le(sector),
        data,
        data_len,
        status,
    })
}

/// The backing file and what the guest may do with it.
#[derive(Debug)]
pub struct Disk {
    /// The open backing file (shared with the requests in flight on the async engine, so a
    /// backing file swapped meanwhile stays open until they complete).
    pub file: Arc<File>,
    /// Capacity in sectors.
    pub sectors: u64,
    /// Whether writes are refused.
    pub read_only: bool,
    /// Serial returned by GET_ID (the drive id, at most 20 bytes).
    pub serial: Vec<u8>,
}

/// Outcome of executing a request: status byte and bytes written to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// VIRTIO_BLK_S_*.
    pub status: u8,
    /// Bytes written into guest buffers (excluding the status byte).
    pub written: u32,
}

/// Status of a request that completed: OK, written nothing.
pub const OK: Outcome = Outcome {
    status: VIRTIO_BLK_S_OK as u8,
    written: 0,
};
/// Status of a failed request.
pub const IOERR: Outcome = Outcome {
    status: VIRTIO_BLK_S_IOERR as u8,
    written: 0,
};

/// What a request needs from the backing file, once checked against the disk: the part both
/// engines share. Requests that need no file I/O are answered at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOp {
    /// Read or write `len` bytes at byte `offset` (the request's data buffers).
    Transfer {
        /// Byte offset in the file.
        offset: u64,
    },
    /// fsync.
    Flush,
    /// Punch a hole of `len` bytes at `offset`.
    Discard {
        /// Byte offset in the file.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
}

impl Request {
    /// Checks the request against the disk: the file operation to run, or the outcome to
    /// return at once (GET_ID, unsupported types, out-of-range or read-only refusals).
    pub fn prepare<M: GuestMemoryBackend>(&self, disk: &Disk, mem: &M) -> Result<FileOp, Outcome> {
        let capacity = disk.sectors * SECTOR_SIZE;
        match self.kind {
            RequestType::In | RequestType::Out => {
                if self.kind == RequestType::Out && disk.read_only {
                    return Err(IOERR);
                }
                let offset = self.sector.checked_mul(SECTOR_SIZE).ok_or(IOERR)?;
                match offset.checked_add(self.data_len) {
                    Some(end) if end <= capacity => Ok(FileOp::Transfer { offset }),
                    _ => Err(IOERR),
                }
            }
            RequestType::Flush => Ok(FileOp::Flush),
            RequestType::Discard => {
                if disk.read_only {
                    return Err(IOERR);
                }
                let &(addr, _) = self.data.first().ok_or(IOERR)?;
                let mut seg = [0u8; DISCARD_SEG_LEN as usize];
                mem.read_slice(&mut seg, addr).map_err(|_| IOERR)?;
                let le64 = |b: &[u8]| b.try_into().map(u64::from_le_bytes);
                let le32 = |b: &[u8]| b.try_into().map(u32::from_le_bytes);
                let (Ok(sector), Ok(num), Ok(flags)) =
                    (le64(&seg[..8]), le32(&seg[8..12]), le32(&seg[12..16]))
                else {
                    return Err(IOERR);
                };
                // The only flag (unmap) is for write-zeroes; a discard carrying it is
                // unsupported, as the specification says.
                if flags != 0 {
                    return Err(Outcome {
                        status: VIRTIO_BLK_S_UNSUPP as u8,
                        written: 0,
                    });
                }
                if num > MAX_DISCARD_SECTORS {
                    return Err(IOERR);
                }
                let offset = sector.checked_mul(SECTOR_SIZE).ok_or(IOERR)?;
                let len = u64::from(num) * SECTOR_SIZE;
                match offset.checked_add(len) {
                    Some(end) if end <= capacity => Ok(FileOp::Discard { offset, len }),
                    _ => Err(IOERR),
                }
            }
            RequestType::GetId => {
                let &(addr, len) = self.data.first().ok_or(IOERR)?;
                let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
                let n = disk.serial.len().min(id.len());
                id[..n].copy_from_slice(&disk.serial[..n]);
                let n = (len as usize).min(id.len());
                match mem.write_slice(&id[..n], addr) {
                    Ok(()) => Err(Outcome {
                        status: VIRTIO_BLK_S_OK as u8,
                        written: n as u32,
                    }),
                    Err(_) => Err(IOERR),
                }
            }
            RequestType::Unsupported(_) => Err(Outcome {
                status: VIRTIO_BLK_S_UNSUPP as u8,
                written: 0,
            }),
        }
    }

    /// The outcome of a file operation that succeeded.
    pub fn success(&self) -> Outcome {
        Outcome {
            status: VIRTIO_BLK_S_OK as u8,
            written: if self.kind == RequestType::In {
                self.data_len as u32
            } else {
                0
            },
        }
    }

    /// Runs the request against `disk`, blocking (the synchronous engine). Errors become
    /// VIRTIO_BLK_S_IOERR.
    pub fn execute<M: GuestMemoryBackend>(&self, disk: &mut Disk, mem: &M) -> Outcome {
        let op = match self.prepare(disk, mem) {
            Ok(op) => op,
            Err(out) => return out,
        };
        let r = match op {
            FileOp::Transfer { offset } => self.transfer(disk, mem, offset),
            FileOp::Flush => disk.file.sync_all(),
            FileOp::Discard { offset, len } => punch_hole(&disk.file, offset, len),
        };
        match r {
            Ok(()) => self.success(),
            Err(e) => {
                tracing::warn!("virtio-block: I/O error: {e}");
                IOERR
            }
        }
    }

    fn transfer<M: GuestMemoryBackend>(
        &self,
        disk: &Disk,
        mem: &M,
        offset: u64,
    ) -> std::io::Result<()> {
        let mut file: &File = &disk.file;
        file.seek(SeekFrom::Start(offset))?;
        for &(addr, len) in &self.data {
            let r = if self.kind == RequestType::In {
                mem.read_exact_volatile_from(addr, &mut file, len as usize)
            } else {
                mem.write_all_volatile_to(addr, &mut file, len as usize)
            };
            r.map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        Ok(())
    }
}

/// The `fallocate` mode of a discard: free the blocks, keep the file's size.
pub const PUNCH_HOLE_MODE: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;

fn punch_hole(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: fallocate on a file descriptor we own; no memory is passed.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), PUNCH_HOLE_MODE, off, n) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
