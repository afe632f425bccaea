//! Conntrack entries of deleted ENIs, flushed through Debian's `conntrack` tool
//! (conntrack-tools: no well-kept Rust crate speaks ctnetlink), so a reused address never
//! inherits a dead task's flows.
//!
//! Where flows are tracked: in the host's network namespace, where netd's nft table filters,
//! forwards and NATs every ENI's traffic. A task's own namespace holds no ruleset of netd's
//! (its bridge does not call netfilter), and whatever it might track dies with it. An entry
//! belongs to an address when its original or reply source or destination is that address,
//! which also catches public-IP DNAT and masqueraded flows.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::error::{Error, Result};

/// The tool (Debian package `conntrack`).
const TOOL: &str = "conntrack";
/// One run of the tool never holds the daemon longer than this.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// Each filter is one deletion pass (the tool ANDs filters given together).
const FILTERS: [&str; 4] = ["--orig-src", "--orig-dst", "--reply-src", "--reply-dst"];
/// Present while the kernel tracks connections in this namespace.
const TRACKING: &str = "/proc/sys/net/netfilter/nf_conntrack_max";

/// Fails with a clear error when the tool is missing (checked once at start, so a missing
/// package is found before the first delete).
pub async fn check() -> Result<()> {
    let out = run(&["--version"]).await.map_err(|e| {
        Error::Conntrack(format!(
            "netd needs the `{TOOL}` tool (Debian package conntrack) to flush deleted ENIs' \
             flows: {e}"
        ))
    })?;
    if !out.status.success() {
        return Err(Error::Conntrack(format!(
            "`{TOOL} --version` failed: {}",
            bounded(&out.stderr)
        )));
    }
    Ok(())
}

/// Deletes every host-namespace entry whose original or reply source or destination is
/// one of `addrs`; returns how many were deleted. Nothing to do (Ok(0)) while the kernel
/// tracks no connections.
pub async fn flush(addrs: &[Ipv4Addr]) -> Result<u64> {
    if addrs.is_empty() || !Path::new(TRACKING).exists() {
        return Ok(0);
    }
    let mut deleted = 0;
    for addr in addrs {
        let a = addr.to_string();
        for filter in FILTERS {
            deleted += delete(&["-D", "-f", "ipv4", filter, &a]).await?;
        }
    }
    Ok(deleted)
}

/// One deletion pass. The tool exits 1 both when it deleted nothing and on errors; its
/// "N flow entries have been deleted" line tells them apart.
async fn delete(args: &[&str]) -> Result<u64> {
    let out = run(args)
        .await
        .map_err(|e| Error::Conntrack(format!("{TOOL} {}: {e}", args.join(" "))))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    match deleted_count(&stderr) {
        Some(n) => Ok(n),
        None => Err(Error::Conntrack(format!(
            "{TOOL} {} failed ({}): {}",
            args.join(" "),
            out.status,
            bounded(&out.stderr)
        ))),
    }
}

/// The count of the tool's summary line, if it printed one.
fn deleted_count(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        let head = l.strip_suffix(" flow entries have been deleted.")?;
        head.rsplit(' ').next()?.parse().ok()
    })
}

async fn run(args: &[&str]) -> std::io::Result<std::process::Output> {
    let child = Command::new(TOOL)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    match tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output()).await {
        Ok(out) => out,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {RUN_TIMEOUT:?}"),
        )),
    }
}

fn bounded(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim()
        .chars()
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_is_parsed() {
        let ok = "conntrack v1.4.7 (conntrack-tools): 3 flow entries have been deleted.\n";
        assert_eq!(deleted_count(ok), Some(3));
        let none = "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.";
        assert_eq!(deleted_count(none), Some(0));
        let err = "conntrack v1.4.7 (conntrack-tools): Operation failed: invalid parameters";
        assert_eq!(deleted_count(err), None);
        assert_eq!(deleted_count(""), None);
    }
}
