//! Test support shared by several crates' integration tests (each includes it with
//! `#[path]`).
//!
//! The Prometheus text exposition parsed by the reference parser (Debian's
//! `python3-prometheus-client`, its strict OpenMetrics parser): a scrape that does not
//! parse fails the test.

use std::io::Write;
use std::process::{Command, Stdio};

const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;

/// One parsed sample: name, labels, value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::HashMap<String, String>,
    pub value: f64,
}

/// Parses an exposition; panics (with the parser's message) when it is not valid.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 (scripts/install-deps services)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write scrape");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "not a valid exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(String, std::collections::HashMap<String, String>, f64)> =
        serde_json::from_slice(&out.stdout).expect("parser output");
    rows.into_iter()
        .map(|(name, labels, value)| Sample {
            name,
            labels,
            value,
        })
        .collect()
}

/// The value of the sample `name` whose labels include `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// The observation count of histogram `name` with `labels` (0 when absent).
pub fn hist_count(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    value(samples, &format!("{name}_count"), labels).unwrap_or(0.0)
}
