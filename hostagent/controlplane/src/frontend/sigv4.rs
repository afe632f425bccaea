//! AWS Signature Version 4 verification, as AWS does it: the signature of the
//! received request is recomputed (canonical request over the headers the client
//! signed and the SHA-256 of the body actually received, string to sign, derived
//! key) and compared in constant time. Before that, the request must carry its
//! headers once each and within [`HeaderLimits`], and `host`, `x-amz-date`,
//! `content-type` (when present) and every `x-amz-*` header it carries must be
//! signed. The credential scope and the request date are checked too.
//!
//! Refusals are [`SigV4Error`]s, which become the ECS wire shapes
//! (`MissingAuthenticationTokenException`, `IncompleteSignatureException`,
//! `InvalidSignatureException`, `UnrecognizedClientException`) in one `From`.
//! Their messages say what was wrong, never what the right signature or canonical
//! request would be.

use crate::error::ApiError;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Largest accepted difference between the request's date and ours.
pub const MAX_SKEW_SECS: i64 = 15 * 60;

/// Bounds on the headers of a call, checked before anything is hashed.
#[derive(Debug, Clone, Copy)]
pub struct HeaderLimits {
    /// Most headers (name-value pairs) in one request.
    pub max_headers: usize,
    /// Longest value of one header, in bytes.
    pub max_value: usize,
    /// Most bytes of all names and values together.
    pub max_total: usize,
    /// Most names in `SignedHeaders`.
    pub max_signed: usize,
}

/// The header bounds of the API: 64 headers, 8 KiB per value, 16 KiB in all, 32
/// signed names. The AWS CLI and boto3 send about ten headers and 1.5 KiB.
pub const HEADER_LIMITS: HeaderLimits = HeaderLimits {
    max_headers: 64,
    max_value: 8 << 10,
    max_total: 16 << 10,
    max_signed: 32,
};

/// Headers that may appear at most once whether signed or not.
const SINGLE_HEADERS: [&str; 4] = [
    "authorization",
    "x-amz-date",
    "x-amz-target",
    "x-amz-content-sha256",
];

/// Why a request's signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// No `Authorization` header: an unsigned call.
    #[error("Missing Authentication Token")]
    Missing,
    /// The signature is incomplete: a part of `Authorization` missing or malformed,
    /// no `X-Amz-Date`, or a header that must be signed left out.
    #[error("{0}")]
    Incomplete(String),
    /// The signature, or what it covers, is wrong: mismatch, expired, another
    /// scope, a body that does not match `x-amz-content-sha256`, duplicate or
    /// oversized headers.
    #[error("{0}")]
    Invalid(String),
    /// The access key (or a session token) is not one of ours.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
}

impl From<SigV4Error> for ApiError {
    fn from(e: SigV4Error) -> Self {
        let (kind, status) = match e {
            SigV4Error::Missing => ("MissingAuthenticationTokenException", 403),
            SigV4Error::Incomplete(_) => ("IncompleteSignatureException", 400),
            SigV4Error::Invalid(_) => ("InvalidSignatureException", 403),
            SigV4Error::UnknownKey => ("UnrecognizedClientException", 403),
        };
        ApiError {
            kind,
            message: e.to_string(),
            status,
        }
    }
}

/// The parts of a request that SigV4 covers.
pub struct SignedRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path as received (already percent-encoded).
    pub path: &'a str,
    /// Raw query string (may be empty).
    pub query: &'a str,
    /// The request headers (the signed ones are read from here).
    pub headers: &'a HeaderMap,
    /// The request body, whose SHA-256 is part of the signature.
    pub body: &'a [u8],
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorization {
    /// Access key id.
    pub access_key: String,
    /// `YYYYMMDD` of the scope.
    pub date: String,
    /// Region of the scope.
    pub region: String,
    /// Service of the scope.
    pub service: String,
    /// Lower-case signed header names, in the order given.
    pub signed_headers: Vec<String>,
    /// Hex signature.
    pub signature: String,
}

/// Who a verified request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The account of the access key.
    pub account: String,
    /// The access key that signed the request.
    pub access_key: String,
}

fn incomplete(m: impl Into<String>) -> SigV4Error {
    SigV4Error::Incomplete(m.into())
}

fn invalid(m: impl Into<String>) -> SigV4Error {
    SigV4Error::Invalid(m.into())
}

/// Parses the `Authorization` header. Missing: [`SigV4Error::Missing`].
pub fn parse_authorization(headers: &HeaderMap) -> Result<Authorization, SigV4Error> {
    let raw = headers.get("authorization").ok_or(SigV4Error::Missing)?;
    let raw = raw
        .to_str()
        .map_err(|_| incomplete("The Authorization header is not printable ASCII."))?;
    let rest = raw.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        incomplete("Unsupported authorization scheme: expected AWS4-HMAC-SHA256.")
    })?;
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        let slot = if let Some(v) = part.strip_prefix("Credential=") {
            (&mut cred, v, "Credential")
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            (&mut signed, v, "SignedHeaders")
        } else if let Some(v) = part.strip_prefix("Signature=") {
            (&mut sig, v, "Signature")
        } else {
            continue;
        };
        if slot.0.replace(slot.1).is_some() {
            return Err(incomplete(format!(
                "The Authorization header has '{}' more than once.",
                slot.2
            )));
        }
    }
    fn need<'a>(v: Option<&'a str>, what: &str) -> Result<&'a str, SigV4Error> {
        v.filter(|v| !v.is_empty())
            .ok_or_else(|| incomplete(format!("Authorization header requires '{what}' parameter.")))
    }
    let (cred, signed, sig) = (
        need(cred, "Credential")?,
        need(signed, "SignedHeaders")?,
        need(sig, "Signature")?,
    );
    let c: Vec<&str> = cred.split('/').collect();
    if c.len() != 5 || c[4] != "aws4_request" || c.iter().any(|p| p.is_empty()) {
        return Err(incomplete(
            "Credential should be scoped to a valid region and service, and end in aws4_request.",
        ));
    }
    if sig.len() != 64 || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(incomplete("Signature must be 64 hexadecimal digits."));
    }
    Ok(Authorization {
        access_key: c[0].to_string(),
        date: c[1].to_string(),
        region: c[2].to_string(),
        service: c[3].to_string(),
        signed_headers: signed.split(';').map(|s| s.to_ascii_lowercase()).collect(),
        signature: sig.to_ascii_lowercase(),
    })
}

/// The access key an `Authorization` header names, whether or not the request
/// verifies (for the audit log); at most 128 bytes of it.
pub fn claimed_access_key(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get("authorization")?.to_str().ok()?;
    let (_, cred) = raw.split_once("Credential=")?;
    let key = cred.split(['/', ',']).next()?.trim();
    if key.is_empty() {
        return None;
    }
    let mut end = key.len().min(128);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    Some(key[..end].to_string())
}

/// Checks the header bounds and that the headers SigV4 relies on come once.
pub fn check_headers(
    headers: &HeaderMap,
    signed: &[String],
    limits: &HeaderLimits,
) -> Result<(), SigV4Error> {
    if headers.len() > limits.max_headers {
        return Err(invalid(format!(
            "The request has {} headers; at most {} are accepted.",
            headers.len(),
            limits.max_headers
        )));
    }
    let mut total = 0usize;
    for (name, value) in headers {
        if value.len() > limits.max_value {
            return Err(invalid(format!(
                "The header '{name}' is {} bytes long; at most {} are accepted.",
                value.len(),
                limits.max_value
            )));
        }
        total += name.as_str().len() + value.len();
    }
    if total > limits.max_total {
        return Err(invalid(format!(
            "The headers are {total} bytes long; at most {} are accepted.",
            limits.max_total
        )));
    }
    let once = SINGLE_HEADERS
        .iter()
        .copied()
        .chain(signed.iter().map(String::as_str));
    for name in once {
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(invalid(format!(
                "The header '{name}' appears more than once."
            )));
        }
    }
    Ok(())
}

/// Checks `SignedHeaders`: a bounded list of distinct names of headers the request
/// carries, including every header that must be signed.
fn check_signed_names(
    headers: &HeaderMap,
    signed: &[String],
    limits: &HeaderLimits,
) -> Result<(), SigV4Error> {
    if signed.len() > limits.max_signed {
        return Err(incomplete(format!(
            "SignedHeaders names {} headers; at most {} are accepted.",
            signed.len(),
            limits.max_signed
        )));
    }
    let mut seen: Vec<&str> = Vec::with_capacity(signed.len());
    for n in signed {
        if seen.contains(&n.as_str()) {
            return Err(incomplete(format!(
                "SignedHeaders names '{n}' more than once."
            )));
        }
        seen.push(n);
        if !headers.contains_key(n.as_str()) {
            return Err(incomplete(format!(
                "SignedHeaders names '{n}', which the request does not carry."
            )));
        }
    }
    for required in ["host", "x-amz-date"] {
        if !seen.contains(&required) {
            return Err(incomplete(format!(
                "'{required}' must be a signed header (SignedHeaders)."
            )));
        }
    }
    for name in headers.keys() {
        let n = name.as_str();
        if (n.starts_with("x-amz-") || n == "content-type") && !seen.contains(&n) {
            return Err(incomplete(format!(
                "The request carries '{n}', which must be a signed header (SignedHeaders)."
            )));
        }
    }
    Ok(())
}

/// Parses an `x-amz-date` (`YYYYMMDDTHHMMSSZ`) into Unix seconds.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + se)
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn canonical_query(q: &str) -> String {
    let mut pairs: Vec<(String, String)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Builds the canonical request for `req` over `signed_headers`; the payload hash
/// is the SHA-256 of the body received, whatever the client claims.
pub fn canonical_request(req: &SignedRequest<'_>, signed_headers: &[String]) -> String {
    let path = if req.path.is_empty() { "/" } else { req.path };
    let path = uri_encode(&percent_decode(path), true);
    let mut names: Vec<&String> = signed_headers.iter().collect();
    names.sort();
    let mut headers = String::new();
    for n in &names {
        let vals: Vec<String> = req
            .headers
            .get_all(n.as_str())
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        headers.push_str(&format!("{}:{}\n", n, vals.join(",")));
    }
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        path,
        canonical_query(req.query),
        headers,
        names.join(";"),
        sha256_hex(req.body)
    )
}

/// Computes the hex signature of `req` with `secret`.
pub fn sign(req: &SignedRequest<'_>, auth: &Authorization, amz_date: &str, secret: &str) -> String {
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let creq = canonical_request(req, &auth.signed_headers);
    let sts = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(creq.as_bytes())
    );
    let k = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    let k = hmac(&k, auth.region.as_bytes());
    let k = hmac(&k, auth.service.as_bytes());
    let k = hmac(&k, b"aws4_request");
    hex::encode(hmac(&k, sts.as_bytes()))
}

/// Whether `a` and `b` are equal, in a time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Verifies `req` for `region` and `service`; `secret_of` maps an access key to
/// `(account, secret)`. Returns who signed it.
pub fn verify(
    req: &SignedRequest<'_>,
    region: &str,
    service: &str,
    now_unix: i64,
    secret_of: impl Fn(&str) -> Option<(String, String)>,
) -> Result<Caller, SigV4Error> {
    let auth = parse_authorization(req.headers)?;
    check_headers(req.headers, &auth.signed_headers, &HEADER_LIMITS)?;
    check_signed_names(req.headers, &auth.signed_headers, &HEADER_LIMITS)?;
    let amz_date = req
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| incomplete("Missing or unreadable X-Amz-Date header."))?;
    let t = parse_amz_date(amz_date)
        .ok_or_else(|| invalid("X-Amz-Date must be YYYYMMDD'T'HHMMSS'Z'."))?;
    if !amz_date.starts_with(&auth.date) {
        return Err(invalid(
            "The date of the credential scope does not match X-Amz-Date.",
        ));
    }
    if auth.region != region || auth.service != service {
        return Err(invalid(format!(
            "Credential should be scoped to a valid region ('{region}') and service ('{service}')."
        )));
    }
    if (now_unix - t).abs() > MAX_SKEW_SECS {
        return Err(invalid(format!(
            "Signature expired: the X-Amz-Date is not within {} minutes of the server time.",
            MAX_SKEW_SECS / 60
        )));
    }
    // No session tokens are issued here, so a request carrying one is refused.
    if req.headers.contains_key("x-amz-security-token") {
        return Err(SigV4Error::UnknownKey);
    }
    let (account, secret) = secret_of(&auth.access_key).ok_or(SigV4Error::UnknownKey)?;
    if let Some(claimed) = req.headers.get("x-amz-content-sha256") {
        let body = sha256_hex(req.body);
        if !constant_time_eq(claimed.as_bytes(), body.as_bytes()) {
            return Err(invalid(
                "The x-amz-content-sha256 header does not match the SHA-256 of the request body.",
            ));
        }
    }
    let expected = sign(req, &auth, amz_date, &secret);
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(invalid(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(Caller {
        account,
        access_key: auth.access_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn dates_parse() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1440938160));
        assert_eq!(parse_amz_date("2015083T123600Z"), None);
        assert_eq!(parse_amz_date("20151330T123600Z"), None);
    }

    const VANILLA_AUTH: &str =
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

    fn vanilla() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("example.amazonaws.com"));
        h.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        h.insert("authorization", HeaderValue::from_static(VANILLA_AUTH));
        h
    }

    fn secrets(k: &str) -> Option<(String, String)> {
        (k == "AKIDEXAMPLE").then(|| {
            (
                "123".to_string(),
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string(),
            )
        })
    }

    fn check(h: &HeaderMap, body: &[u8]) -> Result<Caller, ApiError> {
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: h,
            body,
        };
        verify(&req, "us-east-1", "service", 1440938160, secrets).map_err(ApiError::from)
    }

    // The "get-vanilla" example of the AWS SigV4 documentation
    // (example credentials published there for testing signers).
    #[test]
    fn known_vector() {
        let h = vanilla();
        assert_eq!(check(&h, b"").map(|c| c.account), Ok("123".to_string()));
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: &h,
            body: b"",
        };
        // Wrong service in our configuration, skew, wrong key.
        let e = ApiError::from(verify(&req, "us-east-1", "ecs", 1440938160, secrets).unwrap_err());
        assert_eq!(e.kind, "InvalidSignatureException");
        let e = verify(&req, "us-east-1", "service", 1440938160 + 3600, secrets).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
        let e = verify(&req, "us-east-1", "service", 1440938160, |_| {
            Some(("1".into(), "other".into()))
        })
        .unwrap_err();
        assert!(matches!(e, SigV4Error::Invalid(_)), "{e}");
        assert!(!e.to_string().contains("5fa00fa3"), "{e}");
        let e = verify(&req, "us-east-1", "service", 1440938160, |_| None).unwrap_err();
        assert_eq!(ApiError::from(e).kind, "UnrecognizedClientException");
    }

    #[test]
    fn the_body_received_is_what_is_signed() {
        let h = vanilla();
        let e = check(&h, b"{}").unwrap_err();
        assert_eq!(e.kind, "InvalidSignatureException", "{e}");
        // A claimed payload hash does not replace the body's: the empty body's
        // hash claimed over another body is refused.
        let mut h2 = vanilla();
        h2.insert(
            "x-amz-content-sha256",
            HeaderValue::from_static(
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        );
        let e = check(&h2, b"{}").unwrap_err();
        assert_eq!(e.kind, "IncompleteSignatureException", "unsigned: {e}");
    }

    #[test]
    fn required_headers_must_be_signed() {
        for (name, value) in [
            (
                "x-amz-target",
                "AmazonEC2ContainerServiceV20141113.DeleteCluster",
            ),
            ("x-amz-security-token", "tok"),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-anything", "1"),
        ] {
            let mut h = vanilla();
            h.insert(name, HeaderValue::from_static(value));
            let e = check(&h, b"").unwrap_err();
            assert_eq!(e.kind, "IncompleteSignatureException", "{name}: {e}");
            assert!(e.message.contains(name), "{e}");
        }
        // Other unsigned headers are fine (user-agent is never signed by botocore).
        let mut h = vanilla();
        h.insert("user-agent", HeaderValue::from_static("aws-cli"));
        assert!(check(&h, b"").is_ok());
        // host unsigned.
        let mut h = vanilla();
        h.insert(
            "authorization",
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
        );
        let e = check(&h, b"").unwrap_err();
        assert_eq!(e.kind, "IncompleteSignatureException", "{e}");
        assert!(e.message.contains("'host'"), "{e}");
    }

    #[test]
    fn duplicate_and_oversized_headers_are_refused() {
        for name in ["host", "x-amz-date", "authorization", "x-amz-target"] {
            let mut h = vanilla();
            let v = h
                .get(name)
                .cloned()
                .unwrap_or(HeaderValue::from_static("x"));
            h.append(name, v.clone());
            if name == "x-amz-target" {
                h.append(name, v);
            }
            let e = check(&h, b"").unwrap_err();
            assert_eq!(e.kind, "InvalidSignatureException", "{name}: {e}");
            assert!(e.message.contains("more than once"), "{name}: {e}");
        }
        let mut h = vanilla();
        let big = "a".repeat(HEADER_LIMITS.max_value + 1);
        h.insert("user-agent", HeaderValue::from_str(&big).unwrap());
        let e = check(&h, b"").unwrap_err();
        assert!(e.message.contains("bytes long"), "{e}");
        let mut h = vanilla();
        for i in 0..HEADER_LIMITS.max_headers {
            h.insert(
                axum::http::HeaderName::from_bytes(format!("x-pad-{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        let e = check(&h, b"").unwrap_err();
        assert!(e.message.contains("headers"), "{e}");
        let mut h = vanilla();
        for i in 0..3 {
            let v = "b".repeat(HEADER_LIMITS.max_value - 100);
            h.insert(
                axum::http::HeaderName::from_bytes(format!("x-pad-{i}").as_bytes()).unwrap(),
                HeaderValue::from_str(&v).unwrap(),
            );
        }
        let e = check(&h, b"").unwrap_err();
        assert!(e.message.contains("headers are"), "{e}");
    }

    #[test]
    fn unsigned_is_missing_token() {
        let h = HeaderMap::new();
        let e = ApiError::from(parse_authorization(&h).unwrap_err());
        assert_eq!(e.kind, "MissingAuthenticationTokenException");
        assert_eq!(e.status, 403);
    }

    #[test]
    fn malformed_authorization_is_incomplete() {
        for a in [
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=zz",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            "Basic dXNlcjpwYXNz",
        ] {
            let mut h = vanilla();
            h.insert("authorization", HeaderValue::from_str(a).unwrap());
            let e = check(&h, b"").unwrap_err();
            assert_eq!(e.kind, "IncompleteSignatureException", "{a}: {e}");
            assert_eq!(e.status, 400);
        }
        assert_eq!(
            claimed_access_key(&vanilla()).as_deref(),
            Some("AKIDEXAMPLE")
        );
    }
}
