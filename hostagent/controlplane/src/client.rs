//! A minimal SigV4-signing ECS client over HTTP/1.1 or HTTPS (one connection per
//! call), for benchmarks and tools that should not depend on the AWS SDKs; and
//! [`Endpoint`], the connection (plain or TLS) it and the test agent open.

use crate::frontend::sigv4::{sign, Authorization, SignedRequest};
use axum::http::HeaderMap;
use serde_json::Value;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A byte stream to the control plane, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where the control plane is and how to reach it: plain TCP (a control plane
/// started with `--dev-plain-http`) or TLS checked against a CA.
#[derive(Clone)]
pub struct Endpoint {
    /// `host:port`.
    pub addr: String,
    /// TLS with this client configuration; None: plain.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Endpoint {
    /// TLS to `addr`, checking its certificate with `tls`.
    pub fn tls(addr: &str, tls: Arc<rustls::ClientConfig>) -> Endpoint {
        Endpoint {
            addr: addr.to_string(),
            tls: Some(tls),
        }
    }

    /// `https` or `http`, `wss` or `ws`.
    pub fn scheme(&self, secure: &'static str, plain: &'static str) -> &'static str {
        if self.tls.is_some() {
            secure
        } else {
            plain
        }
    }

    /// Opens a connection (TCP, then the TLS handshake if TLS).
    pub async fn open(&self) -> std::io::Result<Box<dyn Io>> {
        let tcp = tokio::net::TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let host = match self.addr.rsplit_once(':') {
            Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
            None => self.addr.as_str(),
        };
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let s = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await?;
        Ok(Box::new(s))
    }
}

impl From<&str> for Endpoint {
    fn from(addr: &str) -> Endpoint {
        Endpoint {
            addr: addr.to_string(),
            tls: None,
        }
    }
}

impl From<&String> for Endpoint {
    fn from(addr: &String) -> Endpoint {
        Endpoint::from(addr.as_str())
    }
}

impl From<&Endpoint> for Endpoint {
    fn from(e: &Endpoint) -> Endpoint {
        e.clone()
    }
}

/// The content type of every call (signed, as the server requires).
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Credentials and endpoint.
#[derive(Clone)]
pub struct Client {
    /// `host:port`.
    pub addr: String,
    /// TLS to it with this configuration; None: plain HTTP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The region signed into each call (must be the control plane's).
    pub region: String,
    /// Access key.
    pub key: String,
    /// The secret access key that signs each call.
    pub secret: String,
}

/// `YYYYMMDDTHHMMSSZ` for Unix time `secs`.
pub fn amz_date(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Client {
    /// Calls `op` on a new connection; Err: (error type, message) or a transport error.
    pub async fn call(&self, op: &str, input: &Value) -> Result<Value, (String, String)> {
        let endpoint = Endpoint {
            addr: self.addr.clone(),
            tls: self.tls.clone(),
        };
        let mut s = endpoint.open().await.map_err(transport)?;
        let msg = self.signed_request(op, input, false)?;
        s.write_all(msg.as_bytes()).await.map_err(transport)?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.map_err(transport)?;
        let text = String::from_utf8_lossy(&resp);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| ("Transport".to_string(), "malformed answer".to_string()))?;
        answer(head, body)
    }

    /// Calls `op` on `io`, an open connection that stays open for the next call (as
    /// the SDKs keep theirs); the answer must carry a `Content-Length`.
    pub async fn call_on(
        &self,
        io: &mut Box<dyn Io>,
        op: &str,
        input: &Value,
    ) -> Result<Value, (String, String)> {
        let msg = self.signed_request(op, input, true)?;
        io.write_all(msg.as_bytes()).await.map_err(transport)?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = io.read(&mut chunk).await.map_err(transport)?;
            if n == 0 || buf.len() > 64 * 1024 {
                return Err(("Transport".into(), "connection closed".into()));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let len = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .ok_or_else(|| ("Transport".to_string(), "no Content-Length".to_string()))?;
        let mut body = buf.split_off(head_end + 4);
        while body.len() < len {
            let n = io.read(&mut chunk).await.map_err(transport)?;
            if n == 0 {
                return Err(("Transport".into(), "connection closed".into()));
            }
            body.extend_from_slice(&chunk[..n]);
        }
        answer(&head, &String::from_utf8_lossy(&body[..len]))
    }

    /// The signed HTTP/1.1 request of `op` (`Connection: keep-alive` or `close`).
    fn signed_request(
        &self,
        op: &str,
        input: &Value,
        keep_alive: bool,
    ) -> Result<String, (String, String)> {
        let body = input.to_string();
        let date = amz_date(crate::clock::now_unix());
        let target = format!("AmazonEC2ContainerServiceV20141113.{op}");
        let mut headers = HeaderMap::new();
        let bad = |_| ("Client".to_string(), "bad header".to_string());
        headers.insert(
            "content-type",
            axum::http::HeaderValue::from_static(CONTENT_TYPE),
        );
        headers.insert("host", self.addr.parse().map_err(bad)?);
        headers.insert("x-amz-date", date.parse().map_err(bad)?);
        headers.insert("x-amz-target", target.parse().map_err(bad)?);
        let auth = Authorization {
            access_key: self.key.clone(),
            date: date[..8].to_string(),
            region: self.region.clone(),
            service: "ecs".into(),
            signed_headers: vec![
                "content-type".into(),
                "host".into(),
                "x-amz-date".into(),
                "x-amz-target".into(),
            ],
            signature: String::new(),
        };
        let req = SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: body.as_bytes(),
        };
        let sig = sign(&req, &auth, &date, &self.secret);
        let connection = if keep_alive { "keep-alive" } else { "close" };
        Ok(format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nX-Amz-Date: {date}\r\nX-Amz-Target: {target}\r\n\
             Content-Type: {CONTENT_TYPE}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential={}/{}/{}/ecs/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={sig}\r\n\
             Content-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
            self.addr,
            self.key,
            &date[..8],
            self.region,
            body.len()
        ))
    }
}

fn transport(e: std::io::Error) -> (String, String) {
    ("Transport".to_string(), e.to_string())
}

/// The call's result from the status line and body.
fn answer(head: &str, body: &str) -> Result<Value, (String, String)> {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if head.starts_with("HTTP/1.1 200") {
        Ok(v)
    } else {
        Err((
            v["__type"].as_str().unwrap_or("").to_string(),
            v["message"].as_str().unwrap_or("").to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::amz_date(0), "19700101T000000Z");
        assert_eq!(super::amz_date(1440938160), "20150830T123600Z");
        assert_eq!(super::amz_date(951782400), "20000229T000000Z");
    }
}
