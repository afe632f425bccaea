//! The guest's end of the control channel: connect (vsock in the VM, a Unix socket in
//! tests), handshake, then one session per boot.

use std::fs::File;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, VsockAddr};

/// Where the host is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Vsock { cid: u32, port: u32 },
    Unix(PathBuf),
}

/// A control endpoint that is neither `vsock:CID:PORT` nor `unix:PATH`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?}: expected vsock:CID:PORT or unix:PATH")]
pub struct BadEndpoint(pub String);

impl FromStr for Endpoint {
    type Err = BadEndpoint;
    /// `vsock:CID:PORT` or `unix:PATH`.
    fn from_str(s: &str) -> Result<Self, BadEndpoint> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Endpoint::Unix(PathBuf::from(p)));
        }
        if let Some(rest) = s.strip_prefix("vsock:") {
            if let Some((c, p)) = rest.split_once(':') {
                if let (Ok(cid), Ok(port)) = (c.parse(), p.parse()) {
                    return Ok(Endpoint::Vsock { cid, port });
                }
            }
        }
        Err(BadEndpoint(s.to_string()))
    }
}

fn connect_once(ep: &Endpoint) -> io::Result<File> {
    match ep {
        Endpoint::Unix(p) => Ok(File::from(std::os::fd::OwnedFd::from(UnixStream::connect(
            p,
        )?))),
        Endpoint::Vsock { cid, port } => {
            let fd = socket(
                AddressFamily::Vsock,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )?;
            connect(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &VsockAddr::new(*cid, *port),
            )?;
            Ok(File::from(fd))
        }
    }
}

/// Connects, retrying for up to `patience` (the host may still be setting up).
pub fn connect_retry(ep: &Endpoint, patience: Duration) -> io::Result<File> {
    let deadline = Instant::now() + patience;
    loop {
        match connect_once(ep) {
            Ok(f) => return Ok(f),
            // No vsock in this kernel: waiting will not help.
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => return Err(e),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        assert_eq!(
            "vsock:2:1024".parse::<Endpoint>().unwrap(),
            Endpoint::Vsock { cid: 2, port: 1024 }
        );
        assert_eq!(
            "unix:/tmp/x".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/tmp/x".into())
        );
        assert!("vsock:2".parse::<Endpoint>().is_err());
        assert!("tcp:1".parse::<Endpoint>().is_err());
    }
}
