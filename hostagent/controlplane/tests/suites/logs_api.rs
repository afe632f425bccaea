//! The CloudWatch Logs API as a client writes to it, with the real AWS CLI:
//! streams, PutLogEvents and its batch limits, deletes, retention (enforced on
//! reads and by the sweep), log group tags, another account's group, operations
//! not served, and `aws logs tail --follow`.

use crate::common::*;
use serde_json::{json, Value};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

const DAY: i64 = 24 * 3600 * 1000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// PutLogEvents of `events` (timestamp, message) through a file.
fn put(
    cp: &ControlPlane,
    dir: &std::path::Path,
    group: &str,
    stream: &str,
    events: &[(i64, String)],
) -> Result<Value, String> {
    let v: Vec<Value> = events
        .iter()
        .map(|(t, m)| json!({"timestamp": t, "message": m}))
        .collect();
    let f = json_file(dir, "events.json", &json!(v));
    logs(
        cp,
        &[
            "put-log-events",
            "--log-group-name",
            group,
            "--log-stream-name",
            stream,
            "--log-events",
            &f,
        ],
    )
}

fn ev(t: i64, m: &str) -> (i64, String) {
    (t, m.to_string())
}

fn messages(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect()
}

fn get(cp: &ControlPlane, group: &str, stream: &str) -> Vec<String> {
    let v = logs(
        cp,
        &[
            "get-log-events",
            "--log-group-name",
            group,
            "--log-stream-name",
            stream,
            "--start-from-head",
        ],
    )
    .unwrap();
    messages(&v)
}

fn err(r: Result<Value, String>) -> String {
    error_type(&r.expect_err("the call should fail"))
}

#[test]
fn streams_put_log_events_limits_and_deletes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cp = ControlPlane::start(&[]);
    let g = "/app/api";
    logs(&cp, &["create-log-group", "--log-group-name", g]).unwrap();
    assert_eq!(
        err(logs(
            &cp,
            &[
                "create-log-stream",
                "--log-group-name",
                "/nope",
                "--log-stream-name",
                "s"
            ]
        )),
        "ResourceNotFoundException"
    );
    logs(
        &cp,
        &[
            "create-log-stream",
            "--log-group-name",
            g,
            "--log-stream-name",
            "s1",
        ],
    )
    .unwrap();
    assert_eq!(
        err(logs(
            &cp,
            &[
                "create-log-stream",
                "--log-group-name",
                g,
                "--log-stream-name",
                "s1"
            ]
        )),
        "ResourceAlreadyExistsException"
    );
    for bad in ["a:b", "a*b"] {
        assert_eq!(
            err(logs(
                &cp,
                &[
                    "create-log-stream",
                    "--log-group-name",
                    g,
                    "--log-stream-name",
                    bad
                ]
            )),
            "InvalidParameterException",
            "{bad}"
        );
    }
    let long = "x".repeat(513);
    assert_eq!(
        err(logs(
            &cp,
            &[
                "create-log-stream",
                "--log-group-name",
                g,
                "--log-stream-name",
                &long
            ]
        )),
        "InvalidParameterException"
    );
    let now = now_ms();
    // Accepted, with the too-new one reported and not stored; the token is ignored.
    let r = put(
        &cp,
        d,
        g,
        "s1",
        &[
            ev(now - 1000, "hello"),
            ev(now, "world"),
            ev(now + 3 * 3600 * 1000, "future"),
        ],
    )
    .unwrap();
    assert_eq!(
        r["rejectedLogEventsInfo"],
        json!({"tooNewLogEventStartIndex": 2}),
        "{r}"
    );
    let r = put(
        &cp,
        d,
        g,
        "s1",
        &[ev(now - 15 * DAY, "old"), ev(now - 15 * DAY + 1, "old2")],
    )
    .unwrap();
    assert_eq!(
        r["rejectedLogEventsInfo"],
        json!({"tooOldLogEventEndIndex": 2}),
        "{r}"
    );
    let r = logs(
        &cp,
        &[
            "put-log-events",
            "--log-group-name",
            g,
            "--log-stream-name",
            "s1",
            "--sequence-token",
            "anything",
            "--log-events",
            &format!("timestamp={},message=again", now + 1),
        ],
    )
    .unwrap();
    assert!(r.get("rejectedLogEventsInfo").is_none(), "{r}");
    assert_eq!(get(&cp, g, "s1"), ["hello", "world", "again"]);
    // Refused batches store nothing.
    let refused = |events: &[(i64, String)], why: &str| {
        assert_eq!(
            err(put(&cp, d, g, "s1", events)),
            "InvalidParameterException",
            "{why}"
        );
    };
    refused(&[ev(now, "b"), ev(now - 1, "a")], "out of order");
    refused(
        &[ev(now - DAY - 1, "a"), ev(now, "b")],
        "wider than 24 hours",
    );
    refused(&vec![ev(now, "x"); 10_001], "10,001 events");
    let half = 524_288 - 26;
    let exact = [ev(now, &"a".repeat(half)), ev(now, &"b".repeat(half))];
    refused(
        &[ev(now, &"a".repeat(half)), ev(now, &"b".repeat(half + 1))],
        "1,048,577 bytes",
    );
    assert_eq!(get(&cp, g, "s1").len(), 3, "refused batches stored nothing");
    put(&cp, d, g, "s1", &exact).unwrap();
    put(&cp, d, g, "s1", &vec![ev(now, "y"); 10_000]).unwrap();
    // Missing stream, other account.
    assert_eq!(
        err(put(&cp, d, g, "nope", &[ev(now, "x")])),
        "ResourceNotFoundException"
    );
    let args = [
        "put-log-events",
        "--log-group-name",
        g,
        "--log-stream-name",
        "s1",
        "--log-events",
        &format!("timestamp={now},message=intruder"),
    ];
    assert_eq!(err(logs2(&cp, &args)), "ResourceNotFoundException");
    assert_eq!(
        err(logs2(&cp, &["delete-log-group", "--log-group-name", g])),
        "ResourceNotFoundException"
    );
    assert_eq!(
        err(logs2(
            &cp,
            &[
                "delete-log-stream",
                "--log-group-name",
                g,
                "--log-stream-name",
                "s1"
            ]
        )),
        "ResourceNotFoundException"
    );
    // Deletes.
    logs(
        &cp,
        &[
            "create-log-stream",
            "--log-group-name",
            g,
            "--log-stream-name",
            "s2",
        ],
    )
    .unwrap();
    logs(
        &cp,
        &[
            "delete-log-stream",
            "--log-group-name",
            g,
            "--log-stream-name",
            "s1",
        ],
    )
    .unwrap();
    assert_eq!(
        err(logs(
            &cp,
            &[
                "get-log-events",
                "--log-group-name",
                g,
                "--log-stream-name",
                "s1"
            ]
        )),
        "ResourceNotFoundException"
    );
    assert_eq!(
        err(logs(
            &cp,
            &[
                "delete-log-stream",
                "--log-group-name",
                g,
                "--log-stream-name",
                "s1"
            ]
        )),
        "ResourceNotFoundException"
    );
    let f = logs(&cp, &["filter-log-events", "--log-group-name", g]).unwrap();
    assert!(messages(&f).is_empty(), "the stream's events went with it");
    logs(&cp, &["delete-log-group", "--log-group-name", g]).unwrap();
    assert_eq!(
        err(logs(&cp, &["delete-log-group", "--log-group-name", g])),
        "ResourceNotFoundException"
    );
    let dg = logs(&cp, &["describe-log-groups"]).unwrap();
    assert_eq!(dg["logGroups"], json!([]), "{dg}");
    // Operations not served are named.
    let e = logs(&cp, &["describe-destinations"]).unwrap_err();
    assert_eq!(error_type(&e), "UnknownOperationException", "{e}");
    assert!(e.contains("DescribeDestinations"), "{e}");
}

#[test]
fn retention_is_enforced_on_reads_and_by_the_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cp = ControlPlane::start(&[]);
    let g = "/app/ret";
    logs(&cp, &["create-log-group", "--log-group-name", g]).unwrap();
    logs(
        &cp,
        &[
            "create-log-stream",
            "--log-group-name",
            g,
            "--log-stream-name",
            "s",
        ],
    )
    .unwrap();
    let now = now_ms();
    put(
        &cp,
        d,
        g,
        "s",
        &[
            ev(now - 10 * DAY, "ten days"),
            ev(now - 10 * DAY + 1, "ten days 2"),
        ],
    )
    .unwrap();
    put(&cp, d, g, "s", &[ev(now, "fresh")]).unwrap();
    assert_eq!(get(&cp, g, "s"), ["ten days", "ten days 2", "fresh"]);
    for bad in ["2", "0", "4000"] {
        assert_eq!(
            err(logs(
                &cp,
                &[
                    "put-retention-policy",
                    "--log-group-name",
                    g,
                    "--retention-in-days",
                    bad
                ]
            )),
            "InvalidParameterException",
            "{bad}"
        );
    }
    assert_eq!(
        err(logs2(
            &cp,
            &[
                "put-retention-policy",
                "--log-group-name",
                g,
                "--retention-in-days",
                "7"
            ]
        )),
        "ResourceNotFoundException"
    );
    logs(
        &cp,
        &[
            "put-retention-policy",
            "--log-group-name",
            g,
            "--retention-in-days",
            "7",
        ],
    )
    .unwrap();
    let dg = logs(&cp, &["describe-log-groups"]).unwrap();
    assert_eq!(dg["logGroups"][0]["retentionInDays"], 7, "{dg}");
    // Not returned at once ...
    assert_eq!(get(&cp, g, "s"), ["fresh"]);
    let f = logs(&cp, &["filter-log-events", "--log-group-name", g]).unwrap();
    assert_eq!(messages(&f), ["fresh"]);
    // ... rejected on the way in ...
    let r = put(
        &cp,
        d,
        g,
        "s",
        &[ev(now - 8 * DAY, "late"), ev(now - 8 * DAY + 2, "late")],
    )
    .unwrap();
    assert_eq!(
        r["rejectedLogEventsInfo"]["expiredLogEventEndIndex"], 2,
        "{r}"
    );
    // ... and deleted by the sweep: the stream's bytes drop to the fresh event's.
    cp.wait_for(30, "the retention sweep", || {
        let s = logs(&cp, &["describe-log-streams", "--log-group-name", g]).unwrap();
        (s["logStreams"][0]["storedBytes"] == 5).then_some(())
    });
    logs(&cp, &["delete-retention-policy", "--log-group-name", g]).unwrap();
    assert_eq!(get(&cp, g, "s"), ["fresh"], "swept events stay gone");
    let dg = logs(&cp, &["describe-log-groups"]).unwrap();
    assert!(dg["logGroups"][0].get("retentionInDays").is_none(), "{dg}");
}

#[test]
fn log_group_tags_by_name_and_arn() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&[]);
    let g = "/app/tags";
    let arn = format!("arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{g}");
    logs(
        &cp,
        &[
            "create-log-group",
            "--log-group-name",
            g,
            "--tags",
            "team=web,env=prod",
        ],
    )
    .unwrap();
    let t = logs(&cp, &["list-tags-log-group", "--log-group-name", g]).unwrap();
    assert_eq!(t["tags"], json!({"team": "web", "env": "prod"}));
    logs(
        &cp,
        &["tag-resource", "--resource-arn", &arn, "--tags", "cost=42"],
    )
    .unwrap();
    logs(
        &cp,
        &[
            "untag-resource",
            "--resource-arn",
            &arn,
            "--tag-keys",
            "env",
        ],
    )
    .unwrap();
    let t = logs(
        &cp,
        &[
            "list-tags-for-resource",
            "--resource-arn",
            &format!("{arn}:*"),
        ],
    )
    .unwrap();
    assert_eq!(t["tags"], json!({"team": "web", "cost": "42"}));
    logs(
        &cp,
        &["tag-log-group", "--log-group-name", g, "--tags", "a=1"],
    )
    .unwrap();
    logs(
        &cp,
        &["untag-log-group", "--log-group-name", g, "--tags", "team"],
    )
    .unwrap();
    let t = logs(&cp, &["list-tags-log-group", "--log-group-name", g]).unwrap();
    assert_eq!(t["tags"], json!({"cost": "42", "a": "1"}));
    // Limits: reserved prefix, 50 tags per group.
    assert_eq!(
        err(logs(
            &cp,
            &["tag-resource", "--resource-arn", &arn, "--tags", "aws:x=1"]
        )),
        "InvalidParameterException"
    );
    let f = json_file(
        tmp.path(),
        "tags.json",
        &json!({"resourceArn": arn, "tags": (0..49).map(|i| (format!("k{i}"), "v")).collect::<std::collections::BTreeMap<_, _>>()}),
    );
    assert_eq!(
        err(logs(&cp, &["tag-resource", "--cli-input-json", &f])),
        "InvalidParameterException",
        "49 more tags would make 51"
    );
    let t = logs(&cp, &["list-tags-log-group", "--log-group-name", g]).unwrap();
    assert_eq!(
        t["tags"].as_object().unwrap().len(),
        2,
        "refused change left nothing"
    );
    // Another account's group, by name or ARN, does not exist for the caller.
    assert_eq!(
        err(logs2(
            &cp,
            &["list-tags-for-resource", "--resource-arn", &arn]
        )),
        "ResourceNotFoundException"
    );
    assert_eq!(
        err(logs2(
            &cp,
            &["tag-log-group", "--log-group-name", g, "--tags", "x=1"]
        )),
        "ResourceNotFoundException"
    );
    assert_eq!(
        err(logs(
            &cp,
            &[
                "list-tags-for-resource",
                "--resource-arn",
                &format!("arn:aws:logs:us-east-1:{ACCOUNT2}:log-group:{g}")
            ]
        )),
        "ResourceNotFoundException"
    );
    // Deleting the group deletes its tags.
    logs(&cp, &["delete-log-group", "--log-group-name", g]).unwrap();
    logs(&cp, &["create-log-group", "--log-group-name", g]).unwrap();
    let t = logs(&cp, &["list-tags-log-group", "--log-group-name", g]).unwrap();
    assert_eq!(t["tags"], json!({}));
}

#[test]
fn aws_logs_tail_follow_prints_new_events() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cp = ControlPlane::start(&[]);
    let g = "/app/tail";
    logs(&cp, &["create-log-group", "--log-group-name", g]).unwrap();
    logs(
        &cp,
        &[
            "create-log-stream",
            "--log-group-name",
            g,
            "--log-stream-name",
            "s",
        ],
    )
    .unwrap();
    put(&cp, d, g, "s", &[ev(now_ms() - 1000, "before follow")]).unwrap();
    let mut child = Command::new(AWS)
        .args(["--endpoint-url", &cp.endpoint(), "--region", "us-east-1"])
        .args([
            "logs", "tail", g, "--follow", "--since", "10m", "--format", "short",
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_PAGER", "")
        // Python buffers a pipe: each line must reach the test as it is printed.
        .env("PYTHONUNBUFFERED", "1")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(d.join("tail.err")).unwrap())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut seen = vec![];
    let mut wait_for = |want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        while !seen.iter().any(|l: &String| l.ends_with(want)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => seen.push(l),
                Err(_) => panic!(
                    "`aws logs tail --follow` did not print {want:?}: {seen:?} {}",
                    std::fs::read_to_string(d.join("tail.err")).unwrap_or_default()
                ),
            }
        }
    };
    wait_for("before follow");
    // Lines written while it follows show up on its next poll.
    put(
        &cp,
        d,
        g,
        "s",
        &[
            ev(now_ms(), "while following 1"),
            ev(now_ms(), "while following 2"),
        ],
    )
    .unwrap();
    wait_for("while following 2");
    child.kill().unwrap();
    child.wait().unwrap();
    let n = |m: &str| seen.iter().filter(|l| l.ends_with(m)).count();
    assert_eq!(
        (
            n("before follow"),
            n("while following 1"),
            n("while following 2")
        ),
        (1, 1, 1),
        "each line once: {seen:?}"
    );
}
