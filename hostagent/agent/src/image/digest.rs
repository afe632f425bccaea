//! Content digests (`sha256:<64 hex>`). Digests come from untrusted manifests and name
//! files in the cache, so they are parsed strictly before any use.

use std::fmt;
use std::io::Read;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::error::{ErrorKind, Failure};

/// A validated sha256 digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`; anything else (other algorithms included) is refused.
    pub fn parse(s: &str) -> Result<Digest, Failure> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| {
            Failure::new(
                ErrorKind::BadContent,
                format!("unsupported digest {s:?} (only sha256)"),
            )
        })?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Failure::new(
                ErrorKind::BadContent,
                format!("malformed digest {s:?}"),
            ));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }

    /// The digest of `data`.
    pub fn of_bytes(data: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(Sha256::digest(data)),
        }
    }

    /// The hex part (file name in `blobs/sha256/`).
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// Hashes a file, returning its digest and size (blocking).
pub fn hash_file(path: &Path) -> std::io::Result<(Digest, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            break;
        }
        h.update(&buf[..r]);
        n += r as u64;
    }
    Ok((
        Digest {
            hex: hex::encode(h.finalize()),
        },
        n,
    ))
}

/// A reader that hashes what passes through it (used for layer diff IDs).
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Digest and byte count of everything read so far.
    pub fn finish(self) -> (Digest, u64) {
        (
            Digest {
                hex: hex::encode(self.hasher.finalize()),
            },
            self.count,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Some tools (umoci 0.4 among them) write layer tars that stop right after the last
/// entry's data, without the block padding and the two zero blocks that end an archive.
/// This reader supplies them at end of stream, so such layers unpack; the digests are
/// computed on the real bytes (inside), so nothing unverified gets in: a stream cut in
/// the middle of an entry still fails (the padding cannot complete its data).
pub struct PadAtEof<R> {
    /// The wrapped reader.
    pub inner: R,
    count: u64,
    /// Zero bytes still to supply after EOF (`None`: inner not at EOF yet).
    left: Option<u64>,
    /// Zero bytes supplied after EOF.
    pub padded: u64,
}

impl<R: Read> PadAtEof<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        PadAtEof {
            inner,
            count: 0,
            left: None,
            padded: 0,
        }
    }
}

impl<R: Read> Read for PadAtEof<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() {
                self.count += n as u64;
                return Ok(n);
            }
            self.left = Some((512 - self.count % 512) % 512 + 1024);
        }
        let left = self.left.unwrap_or(0);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        buf[..n].fill(0);
        self.left = Some(left - n as u64);
        self.padded += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_sha256_hex() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(Digest::parse(&good).unwrap().to_string(), good);
        assert!(Digest::parse("sha512:abcd").is_err());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(Digest::parse(&format!("sha256:../{}", "a".repeat(61))).is_err());
        assert!(Digest::parse("sha256:abc").is_err());
    }

    #[test]
    fn hashes_bytes() {
        assert_eq!(
            Digest::of_bytes(b"").hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
