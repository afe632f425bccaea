//! A minimal SigV4-signing ECS client over HTTP/1.1 (one connection per call), for
//! benchmarks and tools that should not depend on the AWS SDKs.

use crate::frontend::sigv4::{sign, Authorization, SignedRequest};
use axum::http::HeaderMap;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The content type of every call (signed, as the server requires).
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Credentials and endpoint.
#[derive(Clone)]
pub struct Client {
    /// `host:port`.
    pub addr: String,
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
    /// Calls `op`; Err: (error type, message) or a transport error.
    pub async fn call(&self, op: &str, input: &Value) -> Result<Value, (String, String)> {
        let io = |e: std::io::Error| ("Transport".to_string(), e.to_string());
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
        let msg = format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nX-Amz-Date: {date}\r\nX-Amz-Target: {target}\r\n\
             Content-Type: {CONTENT_TYPE}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential={}/{}/{}/ecs/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={sig}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            self.key,
            &date[..8],
            self.region,
            body.len()
        );
        let mut s = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(io)?;
        s.write_all(msg.as_bytes()).await.map_err(io)?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.map_err(io)?;
        let text = String::from_utf8_lossy(&resp);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| ("Transport".to_string(), "malformed answer".to_string()))?;
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
