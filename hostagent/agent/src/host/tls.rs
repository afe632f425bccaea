//! TLS to the control plane (rustls, ring): the client configuration that trusts
//! only the CA of `--controlplane-ca`, and the connection the agent channel's
//! WebSocket runs over (wss://, or plain TCP for `--dev-plain-http`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Why the CA file makes no client configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Unreadable or not PEM.
    #[error("--controlplane-ca {}: {source}", .path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// No certificate in it.
    #[error("--controlplane-ca {}: no certificate in it", .0.display())]
    Empty(PathBuf),
    /// rustls refused a certificate.
    #[error("--controlplane-ca {}: {source}", .path.display())]
    Rustls {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
}

/// A client configuration whose only roots are the certificates of `ca` (PEM).
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let pem = |source| TlsError::Pem {
        path: ca.to_path_buf(),
        source,
    };
    let rustls_err = |source| TlsError::Rustls {
        path: ca.to_path_buf(),
        source,
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(pem)? {
        roots.add(c.map_err(pem)?).map_err(rustls_err)?;
    }
    if roots.is_empty() {
        return Err(TlsError::Empty(ca.to_path_buf()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(rustls_err)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// A byte stream to the control plane.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connects to `addr` (`host:port`): TLS checked with `tls` (the name checked is
/// `host`, a DNS name or an IP address), or plain TCP when `tls` is None.
pub async fn connect(
    addr: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> std::io::Result<Box<dyn Io>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Box::new(tcp));
    };
    let name = rustls::pki_types::ServerName::try_from(host_of(addr).to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let s = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await?;
    Ok(Box::new(s))
}

/// The host of `host:port` (`[v6]:port` without its brackets).
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_bad_ca_files() {
        assert_eq!(host_of("10.0.2.2:8443"), "10.0.2.2");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(host_of("cp.example:443"), "cp.example");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate\n").unwrap();
        assert!(matches!(client_config(&p), Err(TlsError::Empty(_))));
        assert!(client_config(&dir.path().join("missing.pem")).is_err());
    }
}
