//! virtio-vsock packet header and reading/writing packets from/to descriptor chains.

use std::io::{Read, Write};

use virtio_queue::DescriptorChain;

use crate::GuestMemoryMmap;

/// Size of `struct virtio_vsock_hdr`.
pub const HDR_LEN: usize = 44;
/// Largest payload accepted from the guest in one packet (Linux sends at most 64 KiB).
pub const MAX_PAYLOAD: u32 = 64 * 1024;
/// The host's CID.
pub const HOST_CID: u64 = 2;
/// Stream socket type, the only one supported.
pub const TYPE_STREAM: u16 = 1;

/// Packet operations.
pub mod op {
    /// Connection request.
    pub const REQUEST: u16 = 1;
    /// Connection accepted.
    pub const RESPONSE: u16 = 2;
    /// Connection reset / refused.
    pub const RST: u16 = 3;
    /// Peer will not receive and/or send any more.
    pub const SHUTDOWN: u16 = 4;
    /// Data.
    pub const RW: u16 = 5;
    /// Credit information.
    pub const CREDIT_UPDATE: u16 = 6;
    /// Asks for a credit update.
    pub const CREDIT_REQUEST: u16 = 7;
}

/// SHUTDOWN flag: the sender will receive no more data.
pub const SHUTDOWN_RCV: u32 = 1;
/// SHUTDOWN flag: the sender will send no more data.
pub const SHUTDOWN_SEND: u32 = 2;

/// A vsock packet header (host byte order; little-endian on the wire).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// Source CID.
    pub src_cid: u64,
    /// Destination CID.
    pub dst_cid: u64,
    /// Source port.
    pub src_port: u32,
    /// Destination port.
    pub dst_port: u32,
    /// Payload length.
    pub len: u32,
    /// Socket type.
    pub type_: u16,
    /// Operation.
    pub op: u16,
    /// Operation flags (SHUTDOWN).
    pub flags: u32,
    /// Sender's receive buffer size.
    pub buf_alloc: u32,
    /// Bytes the sender has consumed from its receive buffer so far.
    pub fwd_cnt: u32,
}

impl Header {
    /// Decodes a header.
    pub fn from_bytes(b: &[u8; HDR_LEN]) -> Header {
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default());
        let u16_at = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap_or_default());
        Header {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            type_: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }

    /// Encodes a header.
    pub fn to_bytes(&self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

/// Why a tx chain is not a usable packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The chain's buffers are not in guest memory, or overflow.
    #[error("descriptor chain unusable: {0}")]
    Chain(String),
    /// Fewer readable bytes than a header.
    #[error("short header")]
    ShortHeader,
    /// Payload length larger than allowed or than the chain holds.
    #[error("bad payload length {0}")]
    BadLength(u32),
}

/// Reads a packet (header and payload) the guest put on the tx queue.
pub fn read_packet(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
) -> Result<(Header, Vec<u8>), PacketError> {
    let mut r = chain
        .reader(mem)
        .map_err(|e| PacketError::Chain(e.to_string()))?;
    let mut hb = [0u8; HDR_LEN];
    r.read_exact(&mut hb)
        .map_err(|_| PacketError::ShortHeader)?;
    let hdr = Header::from_bytes(&hb);
    if hdr.len > MAX_PAYLOAD || hdr.len as usize > r.available_bytes() {
        return Err(PacketError::BadLength(hdr.len));
    }
    let mut data = vec![0u8; hdr.len as usize];
    r.read_exact(&mut data)
        .map_err(|_| PacketError::BadLength(hdr.len))?;
    Ok((hdr, data))
}

/// Room for payload in an rx chain, or None when it cannot even hold a header.
pub fn rx_capacity(
    chain: &DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
) -> Option<usize> {
    let w = chain.clone().writer(mem).ok()?;
    w.available_bytes().checked_sub(HDR_LEN)
}

/// Writes a packet into an rx chain; returns the bytes written.
pub fn write_packet(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    hdr: &Header,
    data: &[u8],
) -> Option<u32> {
    let mut w = chain.writer(mem).ok()?;
    if w.available_bytes() < HDR_LEN + data.len() {
        return None;
    }
    w.write_all(&hdr.to_bytes()).ok()?;
    w.write_all(data).ok()?;
    Some((HDR_LEN + data.len()) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            src_cid: 3,
            dst_cid: 2,
            src_port: 1234,
            dst_port: 52,
            len: 5,
            type_: TYPE_STREAM,
            op: op::RW,
            flags: 0,
            buf_alloc: 65536,
            fwd_cnt: 77,
        };
        assert_eq!(Header::from_bytes(&h.to_bytes()), h);
        assert_eq!(&h.to_bytes()[24..28], &5u32.to_le_bytes());
    }
}
