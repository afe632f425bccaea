//! Byte budgets for the two streams a guest can make the vmm write: its serial console
//! and the log (a malformed virtio request, for one, is a warning each time). Without a
//! budget a hostile guest could fill the host's disk through either. Past its budget a
//! stream writes one notice line and drops the rest, counting what it dropped; writers
//! never see an error for it, so the guest's UART keeps working. No budget (the default)
//! is Firecracker's behaviour.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

/// The guest's serial console output (`--serial-out-limit`).
pub static SERIAL: Budget = Budget::unlimited("serial console output");
/// The vmm's log (`--log-limit`).
pub static LOG: Budget = Budget::unlimited("log");

/// How many bytes a stream may still write.
#[derive(Debug)]
pub struct Budget {
    what: &'static str,
    limit: AtomicU64,
    left: AtomicU64,
    dropped: AtomicU64,
}

impl Budget {
    /// A budget that never runs out until [`Budget::set_limit`] is called.
    pub const fn unlimited(what: &'static str) -> Self {
        Budget {
            what,
            limit: AtomicU64::new(u64::MAX),
            left: AtomicU64::new(u64::MAX),
            dropped: AtomicU64::new(0),
        }
    }

    /// Allows `bytes` more bytes from now on.
    pub fn set_limit(&self, bytes: u64) {
        self.limit.store(bytes, Ordering::Relaxed);
        self.left.store(bytes, Ordering::Relaxed);
    }

    /// Bytes dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Takes up to `len` bytes of the budget; returns (granted, whether this took the last).
    fn take(&self, len: u64) -> (u64, bool) {
        let mut left = self.left.load(Ordering::Relaxed);
        loop {
            if left == 0 {
                return (0, false);
            }
            let n = left.min(len);
            match self.left.compare_exchange_weak(
                left,
                left - n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return (n, n == left),
                Err(now) => left = now,
            }
        }
    }

    /// Writes what the budget allows of `buf` to `out` and drops the rest; reports the
    /// whole of `buf` as written. The write that exhausts the budget is followed by a
    /// notice line.
    pub fn write(&self, out: &mut dyn Write, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len() as u64;
        let (n, last) = self.take(len);
        if n < len {
            self.dropped.fetch_add(len - n, Ordering::Relaxed);
        }
        if n > 0 {
            // n <= buf.len(), so the conversion and the slice cannot fail.
            let n = usize::try_from(n).unwrap_or(buf.len()).min(buf.len());
            out.write_all(&buf[..n])?;
        }
        if last {
            let notice = format!(
                "\n[vmm: {} limit of {} bytes reached; the rest is dropped]\n",
                self.what,
                self.limit.load(Ordering::Relaxed)
            );
            out.write_all(notice.as_bytes())?;
        }
        Ok(buf.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_passes_everything() {
        let b = Budget::unlimited("x");
        let mut out = Vec::new();
        for _ in 0..1000 {
            assert_eq!(b.write(&mut out, b"0123456789").unwrap(), 10);
        }
        assert_eq!(out.len(), 10_000);
        assert_eq!(b.dropped(), 0);
    }

    #[test]
    fn past_the_limit_one_notice_then_nothing() {
        let b = Budget::unlimited("serial console output");
        b.set_limit(15);
        let mut out = Vec::new();
        assert_eq!(b.write(&mut out, b"0123456789").unwrap(), 10);
        assert_eq!(
            b.write(&mut out, b"abcdefghij").unwrap(),
            10,
            "reported whole"
        );
        assert_eq!(b.write(&mut out, b"zzz").unwrap(), 3);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "0123456789abcde\n[vmm: serial console output limit of 15 bytes reached; \
             the rest is dropped]\n"
        );
        assert_eq!(b.dropped(), 8);
    }

    #[test]
    fn a_write_that_exactly_fills_it_gets_the_notice() {
        let b = Budget::unlimited("log");
        b.set_limit(4);
        let mut out = Vec::new();
        b.write(&mut out, b"abcd").unwrap();
        b.write(&mut out, b"e").unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("abcd\n[vmm: log limit of 4"));
        assert_eq!(b.dropped(), 1);
    }
}
