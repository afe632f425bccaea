//! Parsing and executing one virtio-block request from an untrusted descriptor chain.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::ops::Deref;

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryBackend};

/// Bytes per sector, as virtio-block counts them.
pub const SECTOR_SIZE: u64 = 512;
const HEADER_LEN: u32 = 16;
/// Largest data payload accepted in one request (the guest never needs more).
pub const MAX_DATA_LEN: u64 = 64 << 20;

/// What the request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    /// Read sectors into guest buffers.
    In,
    /// Write guest buffers to sectors.
    Out,
    /// fsync the backing file.
    Flush,
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
        t => RequestType::Unsupported(t),
    };
    let mut data = Vec::new();
    let mut data_len = 0u64;
    for d in &descs[1..descs.len() - 1] {
        let want_write = matches!(kind, RequestType::In | RequestType::GetId);
        if matches!(
            kind,
            RequestType::In | RequestType::Out | RequestType::GetId
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
    /// The open backing file.
    pub file: File,
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

impl Request {
    /// Runs the request against `disk`. Errors become VIRTIO_BLK_S_IOERR.
    pub fn execute<M: GuestMemoryBackend>(&self, disk: &mut Disk, mem: &M) -> Outcome {
        let fail = Outcome {
            status: VIRTIO_BLK_S_IOERR as u8,
            written: 0,
        };
        match self.kind {
            RequestType::In | RequestType::Out => {
                if self.kind == RequestType::Out && disk.read_only {
                    return fail;
                }
                let end = self
                    .sector
                    .checked_mul(SECTOR_SIZE)
                    .and_then(|s| s.checked_add(self.data_len));
                match end {
                    Some(end) if end <= disk.sectors * SECTOR_SIZE => {}
                    _ => return fail,
                }
                match self.transfer(disk, mem) {
                    Ok(()) => Outcome {
                        status: VIRTIO_BLK_S_OK as u8,
                        written: if self.kind == RequestType::In {
                            self.data_len as u32
                        } else {
                            0
                        },
                    },
                    Err(e) => {
                        tracing::warn!("virtio-block: I/O error: {e}");
                        fail
                    }
                }
            }
            RequestType::Flush => match disk.file.sync_all() {
                Ok(()) => Outcome {
                    status: VIRTIO_BLK_S_OK as u8,
                    written: 0,
                },
                Err(_) => fail,
            },
            RequestType::GetId => {
                let Some(&(addr, len)) = self.data.first() else {
                    return fail;
                };
                let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
                let n = disk.serial.len().min(id.len());
                id[..n].copy_from_slice(&disk.serial[..n]);
                let n = (len as usize).min(id.len());
                match mem.write_slice(&id[..n], addr) {
                    Ok(()) => Outcome {
                        status: VIRTIO_BLK_S_OK as u8,
                        written: n as u32,
                    },
                    Err(_) => fail,
                }
            }
            RequestType::Unsupported(_) => Outcome {
                status: VIRTIO_BLK_S_UNSUPP as u8,
                written: 0,
            },
        }
    }

    fn transfer<M: GuestMemoryBackend>(&self, disk: &mut Disk, mem: &M) -> std::io::Result<()> {
        disk.file.seek(SeekFrom::Start(self.sector * SECTOR_SIZE))?;
        for &(addr, len) in &self.data {
            let r = if self.kind == RequestType::In {
                mem.read_exact_volatile_from(addr, &mut disk.file, len as usize)
            } else {
                mem.write_all_volatile_to(addr, &mut disk.file, len as usize)
            };
            r.map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        Ok(())
    }
}
