//! A seeded fuzz run over the front door (request parsing, SigV4 verification,
//! decoding), in process: validly signed calls are mutated at random (body, target,
//! date, headers added, removed, duplicated or rewritten, the Authorization header
//! itself, method, path, query) and handed to the real handler over a real state
//! directory. It asserts that nothing panics and that a mutated call passes the
//! signature check only when everything the signature covers is unchanged.
//!
//! Budget: `CONTROLPLANE_FUZZ_CASES` (default 1500), seed `CONTROLPLANE_FUZZ_SEED`
//! (default fixed); e.g. `CONTROLPLANE_FUZZ_CASES=200000 cargo test -p controlplane
//! --release --test fuzz_front_door`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request};
use clap::Parser;
use controlplane::app::App;
use controlplane::config::{Args, Config};
use controlplane::frontend::sigv4::{sign, Authorization, SignedRequest};
use controlplane::frontend::{call, TARGET_PREFIX};
use serde_json::{json, Value};
use std::sync::Arc;

const KEY: &str = "AKIDFUZZ";
const SECRET: &str = "fuzz/secret+key";
const ACCOUNT: &str = "111122223333";
const AUTH_ERRORS: [&str; 4] = [
    "MissingAuthenticationTokenException",
    "IncompleteSignatureException",
    "InvalidSignatureException",
    "UnrecognizedClientException",
];
const OPS: [&str; 8] = [
    "CreateCluster",
    "DeleteCluster",
    "ListClusters",
    "DescribeClusters",
    "RunTask",
    "StopTask",
    "RegisterTaskDefinition",
    "NoSuchOperation",
];

/// A request as the fuzzer holds it: headers in order (duplicates allowed).
#[derive(Clone)]
struct Req {
    method: String,
    uri: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// Readable, and short: every value cut at 100 bytes.
impl std::fmt::Debug for Req {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(100)]).into_owned();
        writeln!(f, "{} {}", self.method, self.uri)?;
        for (k, v) in &self.headers {
            writeln!(f, "{k}: {} ({} bytes)", cut(v), v.len())?;
        }
        write!(f, "\n{}", cut(&self.body))
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn header_map(headers: &[(String, Vec<u8>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            h.append(k, v);
        }
    }
    h
}

/// Signs `r` (host, x-amz-date, x-amz-target, content-type and, if present,
/// x-amz-content-sha256) with the crate's signer, replacing its Authorization.
fn resign(r: &mut Req) {
    r.headers.retain(|h| h.0 != "authorization");
    let h = header_map(&r.headers);
    let date = h
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut names: Vec<String> = h
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k != "user-agent")
        .collect();
    names.sort();
    let (path, query) = r.uri.split_once('?').unwrap_or((&r.uri, ""));
    let auth = Authorization {
        access_key: KEY.into(),
        date: date.get(..8).unwrap_or("").to_string(),
        region: "us-east-1".into(),
        service: "ecs".into(),
        signed_headers: names.clone(),
        signature: String::new(),
    };
    let req = SignedRequest {
        method: &r.method,
        path,
        query,
        headers: &h,
        body: &r.body,
    };
    let sig = sign(&req, &auth, &date, SECRET);
    let value = format!(
        "AWS4-HMAC-SHA256 Credential={KEY}/{}/us-east-1/ecs/aws4_request, SignedHeaders={}, Signature={sig}",
        auth.date,
        names.join(";")
    );
    r.headers.push(("authorization".into(), value.into_bytes()));
}

fn valid(rng: &mut fastrand::Rng) -> Req {
    let op = OPS[rng.usize(..OPS.len())];
    let body = match rng.u8(..4) {
        0 => json!({}),
        1 => json!({"clusterName": format!("fz{}", rng.u32(..50))}),
        2 => json!({"cluster": "fz1", "task": "abc", "reason": "fuzz\n\"x\""}),
        _ => json!({"family": "f", "containerDefinitions": [{"name": "c", "image": "i",
                    "memory": 512}]}),
    };
    let date = controlplane::client::amz_date(controlplane::clock::now_unix());
    let mut headers = vec![
        ("host".to_string(), b"127.0.0.1:8080".to_vec()),
        (
            "content-type".to_string(),
            b"application/x-amz-json-1.1".to_vec(),
        ),
        ("x-amz-date".to_string(), date.into_bytes()),
        (
            "x-amz-target".to_string(),
            format!("{TARGET_PREFIX}{op}").into_bytes(),
        ),
        ("user-agent".to_string(), b"fuzz".to_vec()),
    ];
    let body = body.to_string().into_bytes();
    if rng.bool() {
        use sha2::Digest;
        let sum = hex::encode(sha2::Sha256::digest(&body));
        headers.push(("x-amz-content-sha256".into(), sum.into_bytes()));
    }
    let mut r = Req {
        method: "POST".into(),
        uri: "/".into(),
        headers,
        body,
    };
    resign(&mut r);
    r
}

fn random_bytes(rng: &mut fastrand::Rng, max: usize) -> Vec<u8> {
    let n = rng.usize(..=max);
    (0..n)
        .map(|_| match rng.u8(..10) {
            0 => rng.u8(..),
            1 => b' ',
            2 => b',',
            3 => b';',
            4 => b'=',
            5 => b'/',
            _ => rng.u8(b'0'..=b'z'),
        })
        .collect()
}

fn mutate(rng: &mut fastrand::Rng, r: &mut Req) {
    const NAMES: [&str; 10] = [
        "x-amz-target",
        "x-amz-date",
        "host",
        "content-type",
        "authorization",
        "x-amz-security-token",
        "x-amz-content-sha256",
        "x-amz-meta-fuzz",
        "user-agent",
        "x-other",
    ];
    let i = if r.headers.is_empty() {
        0
    } else {
        rng.usize(..r.headers.len())
    };
    match rng.u8(..13) {
        0 if !r.body.is_empty() => {
            let j = rng.usize(..r.body.len());
            r.body[j] ^= 1 << rng.u8(..8);
        }
        1 => {
            if rng.bool() {
                r.body.truncate(rng.usize(..=r.body.len()));
            } else {
                r.body.extend(random_bytes(rng, 8));
            }
        }
        2 => {
            let op = OPS[rng.usize(..OPS.len())];
            let v = format!("{TARGET_PREFIX}{op}").into_bytes();
            r.headers.retain(|h| h.0 != "x-amz-target");
            r.headers.push(("x-amz-target".into(), v));
        }
        3 => {
            let t = controlplane::clock::now_unix() + rng.i64(-2000..2000);
            let d = controlplane::client::amz_date(t).into_bytes();
            for h in &mut r.headers {
                if h.0 == "x-amz-date" {
                    h.1 = d.clone();
                }
            }
        }
        4 => {
            let n = NAMES[rng.usize(..NAMES.len())];
            let v = if rng.bool() {
                r.headers
                    .iter()
                    .find(|h| h.0 == n)
                    .map(|h| h.1.clone())
                    .unwrap_or_else(|| b"v".to_vec())
            } else {
                random_bytes(rng, 40)
            };
            r.headers.push((n.to_string(), v));
        }
        5 if !r.headers.is_empty() => {
            r.headers.remove(i);
        }
        6 | 7 => {
            // The Authorization header: a byte flipped, cut, or a part rewritten.
            if let Some(h) = r.headers.iter_mut().find(|h| h.0 == "authorization") {
                let s = String::from_utf8_lossy(&h.1).into_owned();
                let s = match rng.u8(..6) {
                    0 => s.replacen("content-type;", "", 1),
                    1 => s.replacen("SignedHeaders=", "SignedHeaders=x-other;", 1),
                    2 => s.replacen("us-east-1", "us-west-2", 1),
                    3 => s.replacen(", Signature=", ", Signature=0", 1),
                    4 => format!("{s}, Signature={}", "a".repeat(64)),
                    _ => {
                        let mut b = s.into_bytes();
                        if !b.is_empty() {
                            let j = rng.usize(..b.len());
                            if rng.bool() {
                                b.truncate(j);
                            } else {
                                b[j] = rng.u8(b' '..=b'~');
                            }
                        }
                        String::from_utf8_lossy(&b).into_owned()
                    }
                };
                h.1 = s.into_bytes();
            }
        }
        8 if !r.headers.is_empty() => {
            // Whitespace that SigV4 folds away, or a space inside a value.
            let v = &mut r.headers[i].1;
            let j = rng.usize(..=v.len());
            v.insert(j, b' ');
        }
        9 if !r.headers.is_empty() => {
            r.headers[i].1 = random_bytes(rng, 64);
        }
        10 => {
            r.uri =
                ["/", "/x", "/?a=b", "//", "/%2F", "/?", "/?x-amz-date=1"][rng.usize(..7)].into();
        }
        11 => r.method = ["GET", "PUT", "POST"][rng.usize(..3)].into(),
        _ => {
            let n = NAMES[rng.usize(..NAMES.len())];
            r.headers
                .push((n.to_string(), b"x".repeat(rng.usize(..20_000))));
        }
    }
}

/// SigV4's view of a header: its values, whitespace folded, joined by commas.
fn folded(h: &HeaderMap, name: &str) -> String {
    h.get_all(name)
        .iter()
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What a call passing the check must share with the call that was signed.
fn assert_covered(orig: &Req, got: &Req, seed: u64, case: u64) {
    let (a, b) = (header_map(&orig.headers), header_map(&got.headers));
    let ctx = format!("seed {seed} case {case}: {got:?}");
    assert_eq!(orig.body, got.body, "body changed yet accepted; {ctx}");
    assert_eq!(orig.method, got.method, "{ctx}");
    for name in [
        "host",
        "x-amz-date",
        "x-amz-target",
        "content-type",
        "x-amz-content-sha256",
    ] {
        assert_eq!(folded(&a, name), folded(&b, name), "{name}; {ctx}");
    }
    for name in ["x-amz-target", "x-amz-date", "authorization"] {
        assert!(
            b.get_all(name).iter().count() <= 1,
            "duplicate {name}; {ctx}"
        );
    }
    for k in b.keys() {
        let k = k.as_str();
        assert!(
            !k.starts_with("x-amz-") || a.contains_key(k),
            "unsigned {k} accepted; {ctx}"
        );
    }
}

fn to_http(r: &Req) -> Option<Request<Body>> {
    let mut b = Request::builder().method(r.method.as_str()).uri(&r.uri);
    for (k, v) in &r.headers {
        b = b.header(
            HeaderName::from_bytes(k.as_bytes()).ok()?,
            HeaderValue::from_bytes(v).ok()?,
        );
    }
    b.body(Body::from(r.body.clone())).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_signed_calls_pass_only_when_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let args = Args::try_parse_from([
        "controlplane",
        "--data-dir",
        data.to_str().unwrap(),
        "--account",
        &format!("{ACCOUNT}:{KEY}:{SECRET}"),
        "--dev-plain-http",
    ])
    .unwrap();
    let app = Arc::new(App::open(&Config::from_args(&args).unwrap()).unwrap());
    let seed = env_u64("CONTROLPLANE_FUZZ_SEED", 0x5167_7634);
    let cases = env_u64("CONTROLPLANE_FUZZ_CASES", 1500);
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut passed, mut refused, mut resigned) = (0u64, 0u64, 0u64);
    for case in 0..cases {
        let orig = valid(&mut rng);
        let mut r = orig.clone();
        for _ in 0..rng.usize(1..=3) {
            mutate(&mut rng, &mut r);
        }
        let again = rng.u8(..5) == 0;
        if again {
            resign(&mut r);
        }
        let Some(req) = to_http(&r) else {
            continue; // not expressible as HTTP (hyper would refuse it first)
        };
        let resp = call(State(app.clone()), req).await;
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let kind = v["__type"].as_str().unwrap_or("");
        let msg = v["message"].as_str().unwrap_or("");
        assert!(
            !msg.contains("panicked"),
            "a panic behind the front door: seed {seed} case {case}: {msg}"
        );
        if AUTH_ERRORS.contains(&kind) {
            refused += 1;
            assert!((400..500).contains(&status), "{status} {v}");
            continue;
        }
        if again {
            resigned += 1;
        } else {
            passed += 1;
            assert_covered(&orig, &r, seed, case);
        }
    }
    println!(
        "fuzz seed {seed:#x}: {cases} cases, {refused} refused by SigV4, \
         {passed} mutated ones passed (all unchanged where signed), {resigned} re-signed passed"
    );
    assert!(
        refused > cases / 2,
        "the mutations should mostly be refused"
    );
    assert!(resigned > 0, "re-signed calls should reach the operations");
}
