//! Pulling from an OCI Distribution (Docker Registry v2) registry with `oci-client`.

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use oci_client::client::{linux_amd64_resolver, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::io::AsyncWrite;

use super::digest::Digest;
use super::error::{ErrorKind, Failure};
use super::manifest::{Descriptor, ImageManifest};
use super::source::is_loopback_registry;

/// Registry credentials (from the task's execution role configuration).
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryCredentials({}, <redacted>)", self.username)
    }
}

/// One pull's connection to a registry.
pub(crate) struct RegistryPuller {
    client: Client,
    reference: Reference,
    auth: RegistryAuth,
}

impl RegistryPuller {
    /// Plain http is used for loopback registries and those in `insecure`; https otherwise.
    pub fn new(
        reference: Reference,
        creds: Option<&RegistryCredentials>,
        insecure: &[String],
        timeout: Duration,
    ) -> Self {
        install_crypto_provider();
        let host = reference.resolve_registry().to_string();
        let protocol = if is_loopback_registry(&host) || insecure.contains(&host) {
            ClientProtocol::HttpsExcept(vec![host])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            platform_resolver: Some(Box::new(linux_amd64_resolver)),
            connect_timeout: Some(timeout),
            read_timeout: Some(timeout),
            ..Default::default()
        };
        let auth = match creds {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        RegistryPuller {
            client: Client::new(config),
            reference,
            auth,
        }
    }

    /// Fetches the image manifest, resolving an index to its linux/amd64 manifest.
    pub async fn manifest(&self) -> Result<ImageManifest, Failure> {
        let (m, digest) = self
            .client
            .pull_image_manifest(&self.reference, &self.auth)
            .await
            .map_err(map_err)?;
        let config = Descriptor::from_parts(&m.config.media_type, &m.config.digest, m.config.size)?;
        let layers = m
            .layers
            .iter()
            .map(|l| Descriptor::from_parts(&l.media_type, &l.digest, l.size))
            .collect::<Result<Vec<_>, _>>()?;
        ImageManifest::new(Digest::parse(&digest)?, config, layers)
    }

    /// Downloads a blob into `dest` (at most `desc.size` bytes are accepted).
    pub async fn fetch_blob(&self, desc: &Descriptor, dest: &Path) -> Result<(), Failure> {
        let file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| Failure::io(format!("create {}", dest.display()), e))?;
        let od = OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.to_string(),
            size: i64::try_from(desc.size).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let limited = LimitedWriter {
            inner: file,
            left: desc.size,
        };
        self.client
            .pull_blob(&self.reference, &od, limited)
            .await
            .map_err(map_err)
    }
}

/// Installs the process-wide rustls crypto provider (ring) once.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Refuses writes beyond the descriptor's size (a registry sending more is lying).
struct LimitedWriter<W> {
    inner: W,
    left: u64,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for LimitedWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if buf.len() as u64 > self.left {
            return Poll::Ready(Err(std::io::Error::other(
                "blob is larger than its descriptor says",
            )));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.left -= *n as u64;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Maps an oci-client error to a failure class with a readable reason.
fn map_err(e: OciDistributionError) -> Failure {
    use OciDistributionError as E;
    let kind = match &e {
        E::ImageManifestNotFoundError(_) => ErrorKind::NotFound,
        E::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|x| &x.code).collect();
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                ErrorKind::NotFound
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                ErrorKind::Unauthorized
            } else {
                ErrorKind::Registry
            }
        }
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => ErrorKind::Unauthorized,
        E::ServerError { code: 404, .. } => ErrorKind::NotFound,
        E::ServerError {
            code: 401 | 403, ..
        } => ErrorKind::Unauthorized,
        E::RequestError(r) if r.is_connect() || r.is_timeout() => ErrorKind::Unreachable,
        E::DigestError(_) => ErrorKind::BadContent,
        E::ImageIndexParsingNoPlatformResolverError => ErrorKind::Platform,
        E::IoError(_) => ErrorKind::Io,
        _ => ErrorKind::Registry,
    };
    let mut reason = e.to_string();
    // Surface the underlying cause of transport errors (e.g. "connection refused").
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        let t = s.to_string();
        if !reason.contains(&t) {
            reason = format!("{reason}: {t}");
        }
        src = s.source();
    }
    let reason = match kind {
        ErrorKind::NotFound => format!("not found in the registry ({reason})"),
        ErrorKind::Unreachable => format!("registry unreachable ({reason})"),
        ErrorKind::Unauthorized => format!("registry refused the credentials ({reason})"),
        _ => reason,
    };
    Failure::new(kind, reason)
}
