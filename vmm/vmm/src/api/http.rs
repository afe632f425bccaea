//! A small HTTP/1.1 server on a Unix socket (httparse), one connection at a time, with
//! keep-alive. Requests are handed to a handler; responses are JSON or empty. Request
//! targets may be in origin form (`/machine-config`) or absolute form
//! (`http://localhost/machine-config`); bodies above the payload limit are answered 413.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

const MAX_HEADERS: usize = 32;
const MAX_HEAD_BYTES: usize = 16 << 10;
/// Default request body limit (`--http-api-max-payload-size`), Firecracker's default.
pub const DEFAULT_MAX_PAYLOAD: usize = 51_200;

/// An HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// JSON body (None: no body).
    pub body: Option<String>,
}

impl Response {
    /// 204 No Content.
    pub fn no_content() -> Self {
        Response {
            status: 204,
            body: None,
        }
    }

    /// 200 with a JSON body.
    pub fn json(v: &impl serde::Serialize) -> Self {
        Response {
            status: 200,
            body: Some(serde_json::to_string(v).unwrap_or_else(|_| "{}".into())),
        }
    }

    /// A fault: `{"fault_message": msg}`.
    pub fn fault(status: u16, msg: &str) -> Self {
        Response {
            status,
            body: Some(serde_json::json!({ "fault_message": msg }).to_string()),
        }
    }

    fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            204 => "No Content",
            400 => "Bad Request",
            404 => "Not Found",
            413 => "Payload Too Large",
            500 => "Internal Server Error",
            _ => "Unknown",
        }
    }

    /// Serializes status line, headers and body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nServer: vmm\r\n",
            self.status,
            self.reason()
        );
        match &self.body {
            Some(b) => {
                out.push_str(&format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                ));
            }
            None if self.status == 204 => out.push_str("\r\n"),
            None => out.push_str("Content-Length: 0\r\n\r\n"),
        }
        out.into_bytes()
    }
}

/// A request head the server refuses (answered 400, then the connection closes).
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// Not HTTP/1.x.
    #[error("malformed HTTP request: {0}")]
    Malformed(httparse::Error),
    /// A Content-Length that is not a number.
    #[error("invalid Content-Length {0:?}")]
    ContentLength(String),
    /// `Transfer-Encoding` (chunked bodies).
    #[error("chunked transfer encoding is not supported; send Content-Length")]
    Chunked,
}

/// A parsed request head.
struct Head {
    method: String,
    path: String,
    content_length: usize,
    expect_continue: bool,
    close: bool,
    head_len: usize,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError::Malformed(e)),
    };
    let mut h = Head {
        method: req.method.unwrap_or("").to_string(),
        path: origin_form(req.path.unwrap_or("")).to_string(),
        content_length: 0,
        expect_continue: false,
        close: req.version == Some(0),
        head_len,
    };
    for hd in req.headers.iter() {
        let v = String::from_utf8_lossy(hd.value);
        if hd.name.eq_ignore_ascii_case("content-length") {
            h.content_length = v
                .trim()
                .parse()
                .map_err(|_| HeadError::ContentLength(v.to_string()))?;
        } else if hd.name.eq_ignore_ascii_case("expect") {
            h.expect_continue = v.eq_ignore_ascii_case("100-continue");
        } else if hd.name.eq_ignore_ascii_case("connection") {
            h.close = v.eq_ignore_ascii_case("close");
        } else if hd.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HeadError::Chunked);
        }
    }
    Ok(Some(h))
}

/// The path of a request target: an absolute-form target (`http://host/path`) loses its
/// scheme and authority; an origin-form one is returned as is.
fn origin_form(target: &str) -> &str {
    for scheme in ["http://", "https://"] {
        let has = target
            .get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme));
        if has {
            let rest = &target[scheme.len()..];
            return match rest.find(['/', '?']) {
                Some(i) if rest[i..].starts_with('/') => &rest[i..],
                _ => "/",
            };
        }
    }
    target
}

/// Most bytes of a refused body read and dropped before the connection closes.
const MAX_DISCARD: usize = 1 << 20;

/// Reads and drops up to `left` bytes (at most [`MAX_DISCARD`], waiting at most a second
/// for each read) of a body that is refused. Closing a Unix socket with unread data resets
/// the connection, and the client would lose the answer already written.
fn discard_body(s: &mut UnixStream, left: usize) {
    let mut left = left.min(MAX_DISCARD);
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut chunk = [0u8; 4096];
    while left > 0 {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Serves one connection until it closes; `handle(method, path, body)` answers requests
/// with bodies of at most `max_payload` bytes.
pub fn serve_connection(
    mut s: UnixStream,
    max_payload: usize,
    handle: &mut dyn FnMut(&str, &str, &[u8]) -> Response,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        // Read until the head is complete.
        let head = loop {
            match parse_head(&buf) {
                Ok(Some(h)) => break h,
                Ok(None) if buf.len() > MAX_HEAD_BYTES => {
                    s.write_all(&Response::fault(400, "request head too large").to_bytes())?;
                    return Ok(());
                }
                Ok(None) => {}
                Err(e) => {
                    s.write_all(&Response::fault(400, &e.to_string()).to_bytes())?;
                    return Ok(());
                }
            }
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        if head.content_length > max_payload {
            let msg = format!(
                "the request body of {} bytes is larger than the limit of {max_payload} bytes \
                 (--http-api-max-payload-size)",
                head.content_length
            );
            s.write_all(&Response::fault(413, &msg).to_bytes())?;
            let buffered = buf.len().saturating_sub(head.head_len);
            discard_body(&mut s, head.content_length.saturating_sub(buffered));
            return Ok(());
        }
        if head.expect_continue && buf.len() < head.head_len + head.content_length {
            s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let total = head.head_len + head.content_length;
        while buf.len() < total {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let resp = handle(&head.method, &head.path, &buf[head.head_len..total]);
        s.write_all(&resp.to_bytes())?;
        buf.drain(..total);
        if head.close {
            return Ok(());
        }
    }
}

/// Accepts connections forever, serving them one after another (bodies up to
/// `max_payload` bytes).
pub fn serve(
    listener: UnixListener,
    max_payload: usize,
    mut handle: impl FnMut(&str, &str, &[u8]) -> Response,
) {
    for conn in listener.incoming() {
        match conn {
            Ok(s) => {
                if let Err(e) = serve_connection(s, max_payload, &mut handle) {
                    tracing::debug!("API connection ended: {e}");
                }
            }
            Err(e) => tracing::warn!("API accept failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(req: &[u8]) -> String {
        let (mut a, b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            serve_connection(b, 64, &mut |m, p, body| {
                if p == "/echo" {
                    Response::json(&serde_json::json!({"m": m, "len": body.len()}))
                } else {
                    Response::no_content()
                }
            })
        });
        a.write_all(req).unwrap();
        a.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        a.read_to_string(&mut out).unwrap();
        t.join().unwrap().unwrap();
        out
    }

    #[test]
    fn keep_alive_and_bodies() {
        let out =
            roundtrip(b"PUT /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /x HTTP/1.1\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains(r#"{"len":3,"m":"PUT"}"#), "{out}");
        assert!(out.contains("HTTP/1.1 204 No Content\r\n"), "{out}");
    }

    #[test]
    fn malformed_requests_get_400() {
        let out = roundtrip(b"\x01\x02 garbage\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(out.contains("fault_message"));
        let out = roundtrip(b"PUT /echo HTTP/1.1\r\nContent-Length: x\r\n\r\n");
        assert!(out.contains("Content-Length"), "{out}");
        let out = roundtrip(b"PUT /echo HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 413"), "{out}");
        // The limit is exact: 64 bytes pass, 65 do not.
        let mut at = b"PUT /echo HTTP/1.1\r\nContent-Length: 64\r\n\r\n".to_vec();
        at.extend_from_slice(&[b'x'; 64]);
        assert!(roundtrip(&at).contains(r#""len":64"#));
        let mut over = b"PUT /echo HTTP/1.1\r\nContent-Length: 65\r\n\r\n".to_vec();
        over.extend_from_slice(&[b'x'; 65]);
        let out = roundtrip(&over);
        assert!(
            out.starts_with("HTTP/1.1 413") && out.contains("limit of 64"),
            "{out}"
        );
    }

    #[test]
    fn absolute_form_targets() {
        assert_eq!(origin_form("/machine-config"), "/machine-config");
        assert_eq!(
            origin_form("http://localhost/machine-config"),
            "/machine-config"
        );
        assert_eq!(origin_form("HTTP://localhost:80/a?b=1"), "/a?b=1");
        assert_eq!(origin_form("http://localhost"), "/");
        assert_eq!(origin_form("http://localhost?x=/y"), "/");
        assert_eq!(origin_form("https://h/"), "/");
        let out = roundtrip(b"PUT http://localhost/echo HTTP/1.1\r\nContent-Length: 1\r\n\r\nx");
        assert!(out.contains(r#""len":1"#), "{out}");
    }

    #[test]
    fn expect_continue() {
        let out =
            roundtrip(b"PUT /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi");
        assert!(out.contains(r#""len":2"#), "{out}");
    }
}
