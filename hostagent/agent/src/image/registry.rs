//! Pulling from an OCI Distribution (Docker Registry v2) registry: manifests (an index is
//! resolved to its linux/amd64 manifest), blobs, and the registry's authentication
//! (`Basic`, or `Bearer` tokens from the realm of its challenge). Every request goes
//! through the guarded client of `fetch.rs` (policy-checked destinations, timeouts,
//! capped bodies); what a registry answers is parsed but never quoted in a reason.

use std::path::Path;

use oci_client::Reference;
use reqwest::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode, Url};
use serde::Deserialize;

use super::digest::Digest;
use super::error::{ErrorKind, Failure};
use super::fetch::{status_text, Auth, Dest, Guarded, Limits};
use super::manifest::{
    pick_linux_amd64, Descriptor, ImageManifest, RawIndex, RawManifest, INDEX_MEDIA_TYPES,
};
use super::policy::RegistryPolicy;
use super::source::is_loopback_registry;

/// What a manifest request accepts.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

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

/// Caps of one pull's registry answers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    /// Manifest, index and token answers.
    pub manifest_bytes: u64,
}

/// One pull's connection to a registry.
pub(crate) struct RegistryPuller {
    http: Guarded,
    base: Url,
    repository: String,
    /// Digest if the reference has one, else the tag.
    reference: String,
    by_digest: Option<Digest>,
    creds: Option<RegistryCredentials>,
    auth: tokio::sync::Mutex<Option<Auth>>,
    caps: Caps,
}

/// The knobs `RegistryPuller::new` takes from the store's options.
pub(crate) struct Access<'a> {
    pub policy: RegistryPolicy,
    pub insecure: &'a [String],
    pub limits: Limits,
    pub caps: Caps,
}

impl RegistryPuller {
    /// Plain http is used for loopback registries and those in `insecure`; https otherwise.
    pub fn new(
        reference: Reference,
        creds: Option<&RegistryCredentials>,
        access: Access<'_>,
    ) -> Result<Self, Failure> {
        install_crypto_provider();
        let host = reference.resolve_registry().to_string();
        let scheme = if is_loopback_registry(&host) || access.insecure.contains(&host) {
            "http"
        } else {
            "https"
        };
        let base = Url::parse(&format!("{scheme}://{host}/")).map_err(|_| {
            Failure::new(
                ErrorKind::InvalidReference,
                "the registry host is not valid",
            )
        })?;
        let by_digest = reference.digest().map(Digest::parse).transpose()?;
        let r = match (&by_digest, reference.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_string(),
        };
        let http = Guarded::new(access.policy, access.insecure, &host, access.limits)?;
        Ok(RegistryPuller {
            http,
            base,
            repository: reference.repository().to_string(),
            reference: r,
            by_digest,
            creds: creds.cloned(),
            auth: tokio::sync::Mutex::new(None),
            caps: access.caps,
        })
    }

    /// GET a path of the registry's API, answering its authentication challenge once.
    async fn api_get(&self, path: &str, accept: &str, small: bool) -> Result<Response, Failure> {
        let url = self.base.join(path).map_err(|_| {
            Failure::new(
                ErrorKind::InvalidReference,
                "the repository name is not valid",
            )
        })?;
        let timeout = small.then_some(self.http.limits.request);
        let mut auth = self.auth.lock().await;
        let resp = self
            .http
            .get(url.clone(), Dest::Registry, accept, auth.as_ref(), timeout)
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(Challenge::parse);
        drop(resp);
        *auth = Some(self.authenticate(challenge).await?);
        let resp = self
            .http
            .get(url, Dest::Registry, accept, auth.as_ref(), timeout)
            .await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(Failure::new(
                ErrorKind::Unauthorized,
                "registry refused the credentials (401 Unauthorized)",
            ));
        }
        Ok(resp)
    }

    /// Credentials for the registry's challenge.
    async fn authenticate(&self, challenge: Option<Challenge>) -> Result<Auth, Failure> {
        let unauthorized = |why: &str| Failure::new(ErrorKind::Unauthorized, why.to_string());
        match challenge {
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let mut url = Url::parse(&realm)
                    .map_err(|_| unauthorized("the registry's token realm is not a URL"))?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                    let default_scope = format!("repository:{}:pull", self.repository);
                    q.append_pair("scope", scope.as_deref().unwrap_or(&default_scope));
                }
                let basic = self
                    .creds
                    .as_ref()
                    .map(|c| Auth::Basic(c.username.clone(), c.password.clone()));
                let mut resp = self
                    .http
                    .get(
                        url,
                        Dest::TokenRealm,
                        "application/json",
                        basic.as_ref(),
                        Some(self.http.limits.request),
                    )
                    .await?;
                let status = resp.status();
                if !status.is_success() {
                    let kind = if matches!(status.as_u16(), 401 | 403) {
                        ErrorKind::Unauthorized
                    } else {
                        ErrorKind::Registry
                    };
                    return Err(Failure::new(
                        kind,
                        format!(
                            "the registry's token service answered {}",
                            status_text(status)
                        ),
                    ));
                }
                let body = self
                    .http
                    .read_capped(&mut resp, self.caps.manifest_bytes, "the token answer")
                    .await?;
                #[derive(Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let t: Token =
                    serde_json::from_slice(&body).map_err(|e| bad_json("the token answer", &e))?;
                t.token
                    .or(t.access_token)
                    .filter(|t| !t.is_empty())
                    .map(Auth::Bearer)
                    .ok_or_else(|| {
                        Failure::new(ErrorKind::Registry, "the token answer holds no token")
                    })
            }
            Some(Challenge::Basic) => match &self.creds {
                Some(c) => Ok(Auth::Basic(c.username.clone(), c.password.clone())),
                None => Err(unauthorized(
                    "registry requires credentials (401 Unauthorized) and the task gives none",
                )),
            },
            None => Err(unauthorized(
                "registry answered 401 Unauthorized without a usable challenge",
            )),
        }
    }

    /// Fetches a manifest (or index) by tag or digest: its bytes and media type.
    async fn fetch_manifest(
        &self,
        reference: &str,
        expect: Option<(&Digest, u64)>,
    ) -> Result<(Vec<u8>, String, Digest), Failure> {
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        let mut resp = self.api_get(&path, MANIFEST_ACCEPT, true).await?;
        check_status(&resp, "manifest")?;
        let cap = expect.map_or(self.caps.manifest_bytes, |(_, size)| {
            size.min(self.caps.manifest_bytes)
        });
        if let Some((_, size)) = expect {
            if size > self.caps.manifest_bytes {
                return Err(Failure::new(
                    ErrorKind::TooLarge,
                    format!(
                        "the index declares a {size} byte manifest, over the cap of {} bytes",
                        self.caps.manifest_bytes
                    ),
                ));
            }
        }
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let body = self
            .http
            .read_capped(&mut resp, cap, "the manifest")
            .await?;
        let digest = Digest::of_bytes(&body);
        if let Some((want, size)) = expect {
            if &digest != want || body.len() as u64 != size {
                return Err(Failure::new(
                    ErrorKind::BadContent,
                    "the manifest does not match its digest or size",
                ));
            }
        }
        Ok((body, media_type, digest))
    }

    /// Fetches the image manifest, resolving an index to its linux/amd64 manifest.
    pub async fn manifest(&self) -> Result<ImageManifest, Failure> {
        let (mut body, mut media_type, mut digest) =
            self.fetch_manifest(&self.reference, None).await?;
        if let Some(want) = &self.by_digest {
            if &digest != want {
                return Err(Failure::new(
                    ErrorKind::BadContent,
                    "the manifest does not match the digest of the reference",
                ));
            }
        }
        if is_index(&body, &media_type) {
            let index: RawIndex =
                serde_json::from_slice(&body).map_err(|e| bad_json("the image index", &e))?;
            let desc = Descriptor::try_from(pick_linux_amd64(&index)?)?;
            (body, media_type, digest) = self
                .fetch_manifest(&desc.digest.to_string(), Some((&desc.digest, desc.size)))
                .await?;
            if is_index(&body, &media_type) {
                return Err(Failure::new(
                    ErrorKind::BadContent,
                    "the index's linux/amd64 entry is another index",
                ));
            }
        }
        let m: RawManifest =
            serde_json::from_slice(&body).map_err(|e| bad_json("the manifest", &e))?;
        let layers = m
            .layers
            .iter()
            .map(Descriptor::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        ImageManifest::new(digest, Descriptor::try_from(&m.config)?, layers)
    }

    /// Downloads a blob into `dest` (created 0600): refused as soon as it exceeds
    /// `desc.size` bytes.
    pub async fn fetch_blob(&self, desc: &Descriptor, dest: &Path) -> Result<(), Failure> {
        let path = format!("/v2/{}/blobs/{}", self.repository, desc.digest);
        let mut resp = self.api_get(&path, "*/*", false).await?;
        check_status(&resp, "blob")?;
        let mut file = super::cache::create_private(dest)
            .await
            .map_err(|e| Failure::io(format!("create {}", dest.display()), e))?;
        self.http.stream_to(&mut resp, desc.size, &mut file).await?;
        use tokio::io::AsyncWriteExt;
        file.flush()
            .await
            .map_err(|e| Failure::io(format!("write {}", dest.display()), e))
    }
}

fn is_index(body: &[u8], media_type: &str) -> bool {
    if INDEX_MEDIA_TYPES.contains(&media_type) {
        return true;
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Probe>(body).is_ok_and(|p| {
        p.media_type
            .as_deref()
            .is_some_and(|m| INDEX_MEDIA_TYPES.contains(&m))
            || (p.media_type.is_none() && p.manifests.is_some())
    })
}

/// A failed answer, by its status code only.
fn check_status(resp: &Response, what: &str) -> Result<(), Failure> {
    let s = resp.status();
    if s.is_success() {
        return Ok(());
    }
    let (kind, why) = match s.as_u16() {
        404 => (
            ErrorKind::NotFound,
            format!("{what} not found in the registry"),
        ),
        401 | 403 => (
            ErrorKind::Unauthorized,
            "registry refused the credentials".to_string(),
        ),
        _ => (
            ErrorKind::Registry,
            format!("registry could not serve the {what}"),
        ),
    };
    Err(Failure::new(kind, format!("{why} ({})", status_text(s))))
}

/// A JSON parse failure, placed but not quoted (serde's messages can quote the input).
fn bad_json(what: &str, e: &serde_json::Error) -> Failure {
    Failure::new(
        ErrorKind::BadContent,
        format!(
            "{what} is not valid ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ),
    )
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses `Basic realm="x"` or `Bearer realm="..",service="..",scope=".."`; anything
    /// else counts as Basic (the registry asked for credentials).
    fn parse(h: &str) -> Challenge {
        let h = h.trim();
        let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Challenge::Basic;
        }
        let mut params = std::collections::HashMap::new();
        let mut s = rest.trim();
        while !s.is_empty() {
            let Some((key, after)) = s.split_once('=') else {
                break;
            };
            let key = key
                .trim()
                .trim_start_matches(',')
                .trim()
                .to_ascii_lowercase();
            let after = after.trim_start();
            let (value, tail) = if let Some(q) = after.strip_prefix('"') {
                match q.find('"') {
                    Some(end) => (&q[..end], &q[end + 1..]),
                    None => (q, ""),
                }
            } else {
                match after.find(',') {
                    Some(end) => (&after[..end], &after[end..]),
                    None => (after, ""),
                }
            };
            params.insert(key, value.to_string());
            s = tail.trim_start().trim_start_matches(',').trim_start();
        }
        match params.remove("realm") {
            Some(realm) => Challenge::Bearer {
                realm,
                service: params.remove("service"),
                scope: params.remove("scope"),
            },
            None => Challenge::Basic,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#
            ),
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull".into()),
            }
        );
        assert_eq!(
            Challenge::parse(r#"bearer realm=https://a/t, service=s"#),
            Challenge::Bearer {
                realm: "https://a/t".into(),
                service: Some("s".into()),
                scope: None,
            }
        );
        assert_eq!(Challenge::parse(r#"Basic realm="test""#), Challenge::Basic);
        assert_eq!(Challenge::parse("Bearer service=x"), Challenge::Basic);
        assert_eq!(Challenge::parse(""), Challenge::Basic);
    }

    #[test]
    fn json_errors_do_not_quote_the_input() {
        let e = serde_json::from_slice::<RawManifest>(br#"{"config": "SECRET-TEXT"}"#).unwrap_err();
        let f = bad_json("the manifest", &e);
        assert!(!f.reason.contains("SECRET"), "{}", f.reason);
        assert!(
            e.to_string().contains("SECRET"),
            "serde quotes it: the test is meaningful"
        );
    }
}
