//! AWS Signature Version 4 verification: the signature of the received request is
//! recomputed (canonical request, string to sign, derived key) and compared in
//! constant time; the credential scope and the request date are checked too.

use crate::error::ApiError;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Largest accepted difference between the request's date and ours.
pub const MAX_SKEW_SECS: i64 = 15 * 60;

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

/// Parses the `Authorization` header. Missing: `UnrecognizedClientException`.
pub fn parse_authorization(headers: &HeaderMap) -> Result<Authorization, ApiError> {
    let raw = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unrecognized("Missing Authentication Token"))?;
    let rest = raw
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| ApiError::bad_signature("Unsupported authorization scheme."))?;
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            cred = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            sig = Some(v);
        }
    }
    let malformed = || ApiError::bad_signature("Malformed Authorization header.");
    let (cred, signed, sig) = (
        cred.ok_or_else(malformed)?,
        signed.ok_or_else(malformed)?,
        sig.ok_or_else(malformed)?,
    );
    let c: Vec<&str> = cred.split('/').collect();
    if c.len() != 5 || c[4] != "aws4_request" {
        return Err(ApiError::bad_signature(format!(
            "Credential should be scoped to a valid region and service, and end in aws4_request: '{cred}'."
        )));
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

/// Builds the canonical request for `req` over `signed_headers`.
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
    let payload = req
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| sha256_hex(req.body));
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        path,
        canonical_query(req.query),
        headers,
        names.join(";"),
        payload
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

/// Verifies `req`; `secret_of` maps an access key to `(account, secret)`.
/// Returns the account id of the caller.
pub fn verify(
    req: &SignedRequest<'_>,
    region: &str,
    service: &str,
    now_unix: i64,
    secret_of: impl Fn(&str) -> Option<(String, String)>,
) -> Result<String, ApiError> {
    let auth = parse_authorization(req.headers)?;
    let (account, secret) = secret_of(&auth.access_key).ok_or_else(|| {
        ApiError::unrecognized("The security token included in the request is invalid.")
    })?;
    let amz_date = req
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad_signature("Missing X-Amz-Date header."))?;
    let t = parse_amz_date(amz_date)
        .ok_or_else(|| ApiError::bad_signature("Invalid X-Amz-Date header."))?;
    if !amz_date.starts_with(&auth.date) {
        return Err(ApiError::bad_signature(
            "Credential date does not match X-Amz-Date.",
        ));
    }
    if auth.region != region || auth.service != service {
        return Err(ApiError::bad_signature(format!(
            "Credential should be scoped to a valid region ('{region}') and service ('{service}')."
        )));
    }
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(ApiError::bad_signature("The host header must be signed."));
    }
    if (now_unix - t).abs() > MAX_SKEW_SECS {
        return Err(ApiError::bad_signature(format!(
            "Signature expired: {amz_date} is not within 15 minutes of the server time."
        )));
    }
    let expected = sign(req, &auth, amz_date, &secret);
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(ApiError::bad_signature(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(account)
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

    // The "get-vanilla" example of the AWS SigV4 documentation
    // (example credentials published there for testing signers).
    #[test]
    fn known_vector() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("example.amazonaws.com"));
        h.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        h.insert(
            "authorization",
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
        );
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: &h,
            body: b"",
        };
        let secrets = |k: &str| {
            (k == "AKIDEXAMPLE").then(|| {
                (
                    "123".to_string(),
                    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string(),
                )
            })
        };
        assert_eq!(
            verify(&req, "us-east-1", "service", 1440938160, secrets),
            Ok("123".to_string())
        );
        // Wrong service in our configuration, skew, wrong key.
        assert_eq!(
            verify(&req, "us-east-1", "ecs", 1440938160, secrets)
                .unwrap_err()
                .kind,
            "InvalidSignatureException"
        );
        let e = verify(&req, "us-east-1", "service", 1440938160 + 3600, secrets).unwrap_err();
        assert!(e.message.contains("expired"), "{e}");
        let e = verify(&req, "us-east-1", "service", 1440938160, |_| {
            Some(("1".into(), "other".into()))
        })
        .unwrap_err();
        assert_eq!(e.kind, "InvalidSignatureException");
        let e = verify(&req, "us-east-1", "service", 1440938160, |_| None).unwrap_err();
        assert_eq!(e.kind, "UnrecognizedClientException");
    }

    #[test]
    fn unsigned_is_unrecognized() {
        let h = HeaderMap::new();
        let e = parse_authorization(&h).unwrap_err();
        assert_eq!(e.kind, "UnrecognizedClientException");
    }
}
