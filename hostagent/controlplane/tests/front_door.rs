//! The front door against an attacker: botocore-signed requests altered after
//! signing are refused and change nothing; every mutating call, accepted or
//! refused, leaves one audit line.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const ECS: &str = "AmazonEC2ContainerServiceV20141113.";

/// One request as botocore would send it.
#[derive(Clone, Debug)]
struct Signed {
    headers: Vec<(String, String)>,
    body: String,
}

impl Signed {
    fn set(&mut self, name: &str, value: &str) {
        for h in &mut self.headers {
            if h.0.eq_ignore_ascii_case(name) {
                h.1 = value.to_string();
            }
        }
    }
    fn get(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|h| h.0.eq_ignore_ascii_case(name))
            .map(|h| h.1.clone())
            .unwrap_or_default()
    }
    fn add(&mut self, name: &str, value: &str) {
        self.headers.push((name.to_string(), value.to_string()));
    }
}

/// Signs `(target, body, extra signed headers)` calls with botocore's SigV4Auth
/// (`tests/helpers/botocore_sign.py`).
fn botocore_sign(cp: &ControlPlane, calls: &[(&str, Value, Value)]) -> Vec<Signed> {
    let spec = json!({
        "endpoint": cp.endpoint(), "region": "us-east-1", "key": KEY, "secret": SECRET,
        "calls": calls.iter().map(|(op, body, headers)| json!({
            "target": format!("{ECS}{op}"), "body": body.to_string(), "headers": headers,
        })).collect::<Vec<_>>(),
    });
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/botocore_sign.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(helper)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "botocore_sign.py failed");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| Signed {
            headers: r["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap().to_string(),
                        h[1].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
            body: r["body"].as_str().unwrap().to_string(),
        })
        .collect()
}

/// Sends `r` as is over a fresh connection: (status, JSON body).
fn send(addr: &str, r: &Signed) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut msg = String::from("POST / HTTP/1.1\r\n");
    for (k, v) in &r.headers {
        msg.push_str(&format!("{k}: {v}\r\n"));
    }
    msg.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        r.body.len(),
        r.body
    ));
    s.write_all(msg.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn cluster_names(cp: &ControlPlane) -> Vec<String> {
    let v = cp.aws(&["list-clusters"]).unwrap();
    let mut names: Vec<String> = v["clusterArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn create(name: &str) -> (&'static str, Value, Value) {
    ("CreateCluster", json!({"clusterName": name}), json!({}))
}

#[test]
fn requests_altered_after_signing_are_refused() {
    let cp = ControlPlane::start(&[]);
    let sha = |s: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(s.as_bytes()))
    };
    let other_body = json!({"clusterName": "fd-sha-other"}).to_string();
    let signed = botocore_sign(
        &cp,
        &[
            create("fd-ok"),
            create("fd-body-signed"),
            (
                "DescribeClusters",
                json!({"clusterName": "fd-target"}),
                json!({}),
            ),
            create("fd-date"),
            create("fd-token"),
            create("fd-extra"),
            (
                "CreateCluster",
                json!({"clusterName": "fd-sha-lie"}),
                json!({"X-Amz-Content-SHA256": sha(&other_body)}),
            ),
            (
                "CreateCluster",
                json!({"clusterName": "fd-sha-ok"}),
                json!({"X-Amz-Content-SHA256":
                       sha(&json!({"clusterName": "fd-sha-ok"}).to_string())}),
            ),
            create("fd-dup-target"),
            create("fd-dup-type"),
            create("fd-dup-date"),
            create("fd-ctype"),
            create("fd-big"),
        ],
    );
    let [ok, body, target, date, token, extra, sha_lie, sha_ok, dup_target, dup_type, dup_date, ctype, big] =
        <[Signed; 13]>::try_from(signed).unwrap();

    // Unaltered: accepted (and sending it twice replays it, as AWS allows within
    // the 15 minutes; CreateCluster is idempotent).
    let (st, v) = send(&cp.addr, &ok);
    assert_eq!(st, 200, "{v}");
    let (st, v) = send(&cp.addr, &sha_ok);
    assert_eq!(
        st, 200,
        "a signed, matching x-amz-content-sha256 is fine: {v}"
    );

    let mut refused: Vec<(&str, Signed, u16, &str, &str)> = vec![];
    let mut r = body.clone();
    r.body = json!({"clusterName": "fd-body-sent"}).to_string();
    refused.push(("body", r, 403, "InvalidSignatureException", "signature"));
    let mut r = target.clone();
    r.set("X-Amz-Target", &format!("{ECS}CreateCluster"));
    refused.push(("target", r, 403, "InvalidSignatureException", "signature"));
    let mut r = date.clone();
    let d = r.get("X-Amz-Date");
    let sec: u32 = d[13..15].parse().unwrap();
    r.set("X-Amz-Date", &format!("{}{:02}Z", &d[..13], (sec + 1) % 60));
    refused.push(("date", r, 403, "InvalidSignatureException", "signature"));
    let mut r = date.clone();
    r.set("X-Amz-Date", "20200101T000000Z");
    refused.push(("old date", r, 403, "InvalidSignatureException", ""));
    let mut r = token;
    r.add("X-Amz-Security-Token", "FwoGZXIvYXdzEXAMPLE");
    refused.push((
        "unsigned token",
        r,
        400,
        "IncompleteSignatureException",
        "x-amz-security-token",
    ));
    let mut r = extra;
    r.add("X-Amz-Meta-Anything", "1");
    refused.push((
        "unsigned x-amz-*",
        r,
        400,
        "IncompleteSignatureException",
        "x-amz-meta-anything",
    ));
    let mut r = sha_lie;
    r.body = json!({"clusterName": "fd-sha-lie"}).to_string();
    refused.push((
        "x-amz-content-sha256 mismatch",
        r,
        403,
        "InvalidSignatureException",
        "x-amz-content-sha256",
    ));
    let mut r = dup_target;
    r.add("X-Amz-Target", &format!("{ECS}CreateCluster"));
    refused.push((
        "duplicate target",
        r,
        403,
        "InvalidSignatureException",
        "more than once",
    ));
    let mut r = dup_type;
    r.add("Content-Type", "application/x-amz-json-1.1");
    refused.push((
        "duplicate content-type",
        r,
        403,
        "InvalidSignatureException",
        "more than once",
    ));
    let mut r = dup_date.clone();
    let d = r.get("X-Amz-Date");
    r.add("X-Amz-Date", &d);
    refused.push((
        "duplicate date",
        r,
        403,
        "InvalidSignatureException",
        "more than once",
    ));
    // Content-Type signed away: botocore signed it; a request that drops it from
    // SignedHeaders (keeping the header) is refused before the signature check.
    let mut r = ctype;
    let a = r.get("Authorization").replace("content-type;host", "host");
    r.set("Authorization", &a);
    refused.push((
        "content-type unsigned",
        r,
        400,
        "IncompleteSignatureException",
        "content-type",
    ));
    let mut r = big;
    r.set("User-Agent", &"u".repeat(9000));
    refused.push(("oversized", r, 403, "InvalidSignatureException", "bytes"));
    let mut r = dup_date;
    r.headers.retain(|h| h.0 != "Authorization");
    refused.push((
        "unsigned",
        r,
        403,
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    ));

    let secret_sig = ok.get("Authorization");
    let secret_sig = secret_sig.rsplit("Signature=").next().unwrap();
    for (what, r, status, code, says) in &refused {
        let (st, v) = send(&cp.addr, r);
        assert_eq!(v["__type"], *code, "{what}: {v}");
        assert_eq!(st, *status, "{what}: {v}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(says), "{what}: {msg}");
        // The message never gives the right signature nor the canonical request.
        assert!(
            !msg.contains(secret_sig) && !msg.contains('\n'),
            "{what}: {msg}"
        );
        assert!(!msg.contains("POST"), "{what}: {msg}");
    }
    assert_eq!(
        cluster_names(&cp),
        ["fd-ok", "fd-sha-ok"],
        "nothing refused changed the store"
    );
}

fn audit_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn mutating_calls_are_audited_reads_are_not() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("audit/cp-audit.log");
    let mut cp = ControlPlane::start(&["--audit-log", log.to_str().unwrap()]);
    cp.aws(&["create-cluster", "--cluster-name", "audited"])
        .unwrap();
    cp.aws(&["describe-clusters", "--clusters", "audited"])
        .unwrap();
    cp.aws(&["list-clusters"]).unwrap();
    let e = cp
        .aws(&["delete-cluster", "--cluster", "no-such"])
        .unwrap_err();
    assert_eq!(error_type(&e), "ClusterNotFoundException", "{e}");
    let e = cp
        .aws_as(
            KEY2,
            "wrong-secret",
            &["delete-cluster", "--cluster", "audited"],
        )
        .unwrap_err();
    assert_eq!(error_type(&e), "InvalidSignatureException", "{e}");
    let e = cp
        .aws(&[
            "stop-task",
            "--cluster",
            "audited",
            "--task",
            "x",
            "--no-sign-request",
        ])
        .unwrap_err();
    assert_eq!(error_type(&e), "MissingAuthenticationTokenException", "{e}");
    // A tenant-chosen operation name cannot forge a second line.
    let mut forged = botocore_sign(&cp, &[create("forged")]).remove(0);
    forged.set(
        "X-Amz-Target",
        &format!("{ECS}Evil\\\"}}\\n{{\"outcome\":\"OK\",\"operation\":\"StopTask\""),
    );
    let (st, _) = send(&cp.addr, &forged);
    assert_eq!(st, 403);
    assert!(cp.terminate().success());

    let lines = audit_lines(&log);
    let ops: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["operation"].as_str().unwrap(),
                l["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ops[..4],
        [
            ("CreateCluster", "OK"),
            ("DeleteCluster", "ClusterNotFoundException"),
            ("DeleteCluster", "InvalidSignatureException"),
            ("StopTask", "MissingAuthenticationTokenException"),
        ],
        "{lines:#?}"
    );
    assert_eq!(lines.len(), 5, "one line per mutating call: {lines:#?}");
    assert!(ops[4].0.starts_with("Evil"), "{:?}", ops[4]);
    assert_eq!(ops[4].1, "InvalidSignatureException");

    let first = &lines[0];
    assert_eq!(first["account"], ACCOUNT);
    assert_eq!(first["accessKeyId"], KEY);
    assert_eq!(first["api"], "ecs");
    assert_eq!(first["requestId"].as_str().unwrap().len(), 36);
    let t = first["time"].as_str().unwrap();
    assert!(
        t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
        "{t}"
    );
    for l in &lines {
        let src = l["sourceAddress"].as_str().unwrap();
        assert!(src.starts_with("127.0.0.1:"), "{src}");
        assert!(src[10..].parse::<u16>().is_ok(), "{src}");
    }
    // A refused signature names the key it claims and that key's account.
    assert_eq!(lines[2]["accessKeyId"], KEY2);
    assert_eq!(lines[2]["account"], ACCOUNT2);
    assert!(lines[3]["accessKeyId"].is_null() && lines[3]["account"].is_null());
}
