//! The guarded HTTP client of one pull: every destination (registry, token realm, redirect
//! target) is resolved and checked against the [`RegistryPolicy`] before it is contacted,
//! and the client connects only to the checked addresses (its resolver answers from the
//! pins made by the check and knows no other name, so a name cannot resolve differently
//! between check and connect). Redirects are followed here, each hop checked. Requests
//! time out (connect, idle read, whole request, the pull's deadline) and bodies are read
//! with a byte cap. Failure reasons name the status code and never carry the answer's
//! body or a destination name the registry chose.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};
use tokio::time::Instant;

use super::error::{ErrorKind, Failure};
use super::policy::{host_addresses, RegistryPolicy};

/// Redirect hops followed per request.
const MAX_REDIRECTS: usize = 5;

/// Time limits of one pull.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// TCP connect (and name resolution).
    pub connect: Duration,
    /// Longest wait for the next bytes of an answer.
    pub read: Duration,
    /// Whole request, body included, for manifests, indexes, tokens.
    pub request: Duration,
    /// When the whole pull must be done (bounds blob downloads).
    pub deadline: Instant,
    /// The pull's total, for messages.
    pub total: Duration,
}

/// Credentials to present (to the origin they are addressed to only).
#[derive(Clone)]
pub(crate) enum Auth {
    Basic(String, String),
    Bearer(String),
}

/// Which destination is contacted, for messages (only the registry's own name, which is
/// tenant input already shown with the image, is ever named).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dest {
    Registry,
    TokenRealm,
    Redirect,
}

impl Dest {
    fn what(self, registry: &str) -> String {
        match self {
            Dest::Registry => format!("registry {registry}"),
            Dest::TokenRealm => "the registry's token service".to_string(),
            Dest::Redirect => "a redirect target of the registry".to_string(),
        }
    }
}

/// Names checked by the policy, with the addresses they may be connected to.
#[derive(Default)]
struct Pins(Mutex<HashMap<String, Vec<SocketAddr>>>);

/// The client's resolver: answers only names pinned by a check.
struct PinnedResolver(Arc<Pins>);

impl reqwest::dns::Resolve for PinnedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let found = crate::util::lock(&(self.0).0)
            .get(&name.as_str().to_ascii_lowercase())
            .cloned();
        Box::pin(async move {
            match found {
                Some(addrs) => Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs),
                None => Err("name was not checked by the registry policy".into()),
            }
        })
    }
}

/// One pull's guarded client.
pub(crate) struct Guarded {
    client: reqwest::Client,
    pins: Arc<Pins>,
    policy: RegistryPolicy,
    /// `host[:port]` reached over plain http (besides loopback destinations).
    insecure: Vec<String>,
    /// The registry's `host[:port]` as the reference names it.
    registry: String,
    pub limits: Limits,
}

impl Guarded {
    pub fn new(
        policy: RegistryPolicy,
        insecure: &[String],
        registry: &str,
        limits: Limits,
    ) -> Result<Self, Failure> {
        let pins = Arc::new(Pins::default());
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PinnedResolver(pins.clone())))
            .connect_timeout(limits.connect)
            .read_timeout(limits.read)
            .http1_only()
            .user_agent(concat!("hostagent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::new(ErrorKind::Io, format!("http client: {e}")))?;
        Ok(Guarded {
            client,
            pins,
            policy,
            insecure: insecure.to_vec(),
            registry: registry.to_string(),
            limits,
        })
    }

    fn timed_out(&self) -> Failure {
        Failure::new(
            ErrorKind::Unreachable,
            format!(
                "timed out: the pull ran over its limit of {} s",
                self.limits.total.as_secs()
            ),
        )
    }

    /// What is left of the pull's time, or the failure when none is.
    pub fn remaining(&self) -> Result<Duration, Failure> {
        let left = self
            .limits
            .deadline
            .saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(self.timed_out())
        } else {
            Ok(left)
        }
    }

    /// Checks `url` against the scheme rule and the policy, pinning the addresses of its
    /// host for the client.
    async fn admit(&self, url: &Url, dest: Dest) -> Result<(), Failure> {
        let what = || dest.what(&self.registry);
        let not_allowed = |why: String| Failure::new(ErrorKind::NotAllowed, why);
        if !matches!(url.scheme(), "http" | "https") {
            return Err(not_allowed(format!("{}: unsupported URL scheme", what())));
        }
        let port = url
            .port_or_known_default()
            .ok_or_else(|| not_allowed(format!("{}: no port", what())))?;
        let host = url
            .host_str()
            .ok_or_else(|| not_allowed(format!("{}: no host", what())))?;
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        let literal: Option<IpAddr> = bare.unwrap_or(host).parse().ok();
        let name = match literal {
            Some(a) => a.to_string(),
            None => host.to_ascii_lowercase(),
        };
        let addrs: Vec<IpAddr> = match literal {
            Some(a) => vec![a],
            None => {
                let look = tokio::net::lookup_host((name.as_str(), port));
                let limit = self.limits.connect.min(self.remaining()?);
                let found = tokio::time::timeout(limit, look)
                    .await
                    .map_err(|_| {
                        Failure::new(
                            ErrorKind::Unreachable,
                            format!("{}: name resolution timed out", what()),
                        )
                    })?
                    .map_err(|_| {
                        Failure::new(
                            ErrorKind::Unreachable,
                            format!("{}: the name does not resolve", what()),
                        )
                    })?;
                let mut v: Vec<IpAddr> = Vec::new();
                for a in found.map(|s| s.ip()) {
                    if !v.contains(&a) {
                        v.push(a);
                    }
                }
                v
            }
        };
        if addrs.is_empty() {
            return Err(Failure::new(
                ErrorKind::Unreachable,
                format!("{}: the name has no address", what()),
            ));
        }
        let own = host_addresses().map_err(|e| Failure::io("list the host's addresses", e))?;
        self.policy
            .check(&name, port, &addrs, &own)
            .map_err(|r| not_allowed(format!("{}: {r}", what())))?;
        if url.scheme() == "http" {
            let hostport = match literal {
                Some(IpAddr::V6(a)) => format!("[{a}]:{port}"),
                _ => format!("{name}:{port}"),
            };
            let loopback = name == "localhost" || literal.is_some_and(|a| a.is_loopback());
            let listed = self
                .insecure
                .iter()
                .any(|i| i.eq_ignore_ascii_case(&hostport) || i.eq_ignore_ascii_case(&name));
            if !(loopback || listed) {
                return Err(not_allowed(format!(
                    "{}: plain http is used only for loopback and --insecure-registry registries",
                    what()
                )));
            }
        }
        if literal.is_none() {
            let pinned = addrs.iter().map(|a| SocketAddr::new(*a, port)).collect();
            crate::util::lock(&self.pins.0).insert(name, pinned);
        }
        Ok(())
    }

    /// GET `url` (following checked redirects), presenting `auth` to the origin of `url`
    /// only (never to a redirect target elsewhere). `timeout`: the whole request's limit (capped by the pull's deadline).
    pub async fn get(
        &self,
        url: Url,
        dest: Dest,
        accept: &str,
        auth: Option<&Auth>,
        timeout: Option<Duration>,
    ) -> Result<Response, Failure> {
        let first = origin(&url);
        let mut url = url;
        let mut dest = dest;
        for _ in 0..=MAX_REDIRECTS {
            self.admit(&url, dest).await?;
            let left = self.remaining()?;
            let limit = timeout.map_or(left, |t| t.min(left));
            let mut req = self
                .client
                .request(Method::GET, url.clone())
                .timeout(limit)
                .header(
                    ACCEPT,
                    HeaderValue::from_str(accept).unwrap_or(HeaderValue::from_static("*/*")),
                );
            if origin(&url) == first {
                req = match auth {
                    Some(Auth::Basic(u, p)) => req.basic_auth(u, Some(p)),
                    Some(Auth::Bearer(t)) => req.bearer_auth(t),
                    None => req,
                };
            }
            let resp = req.send().await.map_err(|e| self.transport(e, dest))?;
            if !resp.status().is_redirection() || resp.status() == StatusCode::NOT_MODIFIED {
                return Ok(resp);
            }
            let next = resp
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or_else(|| {
                    Failure::new(
                        ErrorKind::Registry,
                        format!(
                            "{} answered {} without a usable Location",
                            dest.what(&self.registry),
                            status_text(resp.status())
                        ),
                    )
                })?;
            url = next;
            dest = Dest::Redirect;
        }
        Err(Failure::new(
            ErrorKind::Registry,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }

    /// A transport error, described without anything the peer chose.
    pub fn transport(&self, e: reqwest::Error, dest: Dest) -> Failure {
        let what = dest.what(&self.registry);
        if e.is_timeout() {
            if self.remaining().is_err() {
                return self.timed_out();
            }
            return Failure::new(ErrorKind::Unreachable, format!("{what}: timed out"));
        }
        // The deepest I/O error says what happened (e.g. "Connection refused").
        let mut io = None;
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            if let Some(i) = s.downcast_ref::<std::io::Error>() {
                io = Some(i.kind());
            }
            src = s.source();
        }
        let detail = io.map_or_else(|| "connection failed".to_string(), |k| k.to_string());
        let kind = if e.is_connect() {
            ErrorKind::Unreachable
        } else {
            ErrorKind::Registry
        };
        let reason = if e.is_connect() {
            format!("cannot connect to {what} ({detail})")
        } else {
            format!("transfer from {what} failed ({detail})")
        };
        Failure::new(kind, reason)
    }

    /// Reads a whole answer of at most `cap` bytes.
    pub async fn read_capped(
        &self,
        resp: &mut Response,
        cap: u64,
        what: &str,
    ) -> Result<Vec<u8>, Failure> {
        let too_large = |n: u64| {
            Failure::new(
                ErrorKind::TooLarge,
                format!("{what} is larger than the cap of {cap} bytes (refused at {n} bytes)"),
            )
        };
        if let Some(n) = resp.content_length().filter(|&n| n > cap) {
            return Err(too_large(n));
        }
        let mut body = Vec::new();
        loop {
            let chunk = tokio::time::timeout_at(self.limits.deadline, resp.chunk())
                .await
                .map_err(|_| self.timed_out())?
                .map_err(|e| self.transport(e, Dest::Registry))?;
            let Some(chunk) = chunk else {
                return Ok(body);
            };
            let n = body.len() as u64 + chunk.len() as u64;
            if n > cap {
                return Err(too_large(n));
            }
            body.extend_from_slice(&chunk);
        }
    }

    /// Streams an answer into `out`, refusing it once it exceeds `declared` bytes.
    pub async fn stream_to(
        &self,
        resp: &mut Response,
        declared: u64,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64, Failure> {
        use tokio::io::AsyncWriteExt;
        let larger = |n: u64| {
            Failure::new(
                ErrorKind::BadContent,
                format!("the blob is larger than the {declared} bytes its descriptor declares (refused at {n} bytes)"),
            )
        };
        if let Some(n) = resp.content_length().filter(|&n| n > declared) {
            return Err(larger(n));
        }
        let mut done = 0u64;
        loop {
            let chunk = tokio::time::timeout_at(self.limits.deadline, resp.chunk())
                .await
                .map_err(|_| self.timed_out())?
                .map_err(|e| self.transport(e, Dest::Registry))?;
            let Some(chunk) = chunk else {
                return Ok(done);
            };
            done += chunk.len() as u64;
            if done > declared {
                return Err(larger(done));
            }
            out.write_all(&chunk)
                .await
                .map_err(|e| Failure::io("write blob", e))?;
        }
    }
}

/// Scheme, host and port of a URL.
type Origin = (String, String, Option<u16>);

fn origin(u: &Url) -> Origin {
    (
        u.scheme().to_string(),
        u.host_str().unwrap_or("").to_ascii_lowercase(),
        u.port_or_known_default(),
    )
}

/// `404 Not Found`: the code and its standard phrase (never the peer's text).
pub(crate) fn status_text(s: StatusCode) -> String {
    match s.canonical_reason() {
        Some(r) => format!("{} {r}", s.as_u16()),
        None => s.as_u16().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve;

    #[tokio::test]
    async fn resolver_knows_only_pinned_names() {
        let pins = Arc::new(Pins::default());
        let r = PinnedResolver(pins.clone());
        let name = |s: &str| s.parse::<reqwest::dns::Name>().unwrap();
        assert!(r.resolve(name("localhost")).await.is_err());
        crate::util::lock(&pins.0).insert(
            "registry.example".into(),
            vec!["192.0.2.7:443".parse().unwrap()],
        );
        let got: Vec<SocketAddr> = r.resolve(name("Registry.Example")).await.unwrap().collect();
        assert_eq!(got, vec!["192.0.2.7:443".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn status_texts() {
        assert_eq!(status_text(StatusCode::NOT_FOUND), "404 Not Found");
        assert_eq!(status_text(StatusCode::from_u16(599).unwrap()), "599");
    }
}
