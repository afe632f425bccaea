//! Quarantine: a stored record that does not decode (written by an older version,
//! damaged on disk, edited by hand) is moved aside instead of failing the call or
//! the start that read it, so one bad record never takes a cell down.
//!
//! The record goes, in one atomic write and only if it still holds the bytes that
//! failed, from `table/key` to [`TABLE`]`/{table}/{key}` as a [`QuarantinedRecord`]
//! (raw value, reason, time). Readers then see the record as absent: lists skip it,
//! a get of it finds nothing. Each store counts what it met and moved
//! ([`QuarantineStats`], shown by `GET /metrics`). An operator inspects and clears
//! the quarantine by hand (see the README).

use super::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// The table holding the records set aside, by `{table}/{key}`.
pub const TABLE: &str = "quarantine";

/// What the backends put before a value that is not UTF-8 (the rest is the value
/// with the invalid sequences replaced): it never decodes as JSON, so the record is
/// quarantined, and the backend knows not to compare the (lossy) bytes.
pub const NOT_UTF8: &str = "\u{0}not-utf8\u{0}";

/// Longest raw value kept in a quarantine record (bytes; the rest is cut).
pub const MAX_RAW: usize = 256 * 1024;

/// A value as the backends return it: the text, or [`NOT_UTF8`] and a lossy copy.
pub fn text_of(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => format!("{NOT_UTF8}{}", String::from_utf8_lossy(bytes)),
    }
}

/// A record set aside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantinedRecord {
    /// The table it was in.
    pub table: String,
    /// Its key there.
    pub key: String,
    /// Why it did not decode.
    pub reason: String,
    /// The stored value (invalid UTF-8 replaced, cut at [`MAX_RAW`] bytes).
    pub raw: String,
    /// Whether the stored value was UTF-8.
    pub utf8: bool,
    /// When it was set aside (seconds since the Unix epoch).
    pub quarantined_at: f64,
}

/// The quarantine counters of one store.
#[derive(Debug, Default)]
pub struct QuarantineStats {
    /// Reads that met a record that does not decode (it was skipped).
    pub undecodable: AtomicU64,
    /// Records moved into the quarantine table.
    pub quarantined: AtomicU64,
}

impl QuarantineStats {
    /// (undecodable, quarantined).
    pub fn get(&self) -> (u64, u64) {
        (
            self.undecodable.load(Ordering::Relaxed),
            self.quarantined.load(Ordering::Relaxed),
        )
    }
}

/// Why `raw` does not decode, in words that quote none of it (for the log).
fn short_reason(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "I/O",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "not the expected shape",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

/// Decodes `raw` read at `table/key`; a value that does not decode is set aside
/// (see [`set_aside`]) and reads as absent.
pub fn decode<T: serde::de::DeserializeOwned, S: Store + ?Sized>(
    store: &S,
    table: &str,
    key: &str,
    raw: String,
) -> Option<T> {
    let (full, short) = if raw.starts_with(NOT_UTF8) {
        let m = "the stored value is not UTF-8".to_string();
        (m.clone(), m)
    } else {
        match serde_json::from_str(&raw) {
            Ok(v) => return Some(v),
            Err(e) => (e.to_string(), short_reason(&e)),
        }
    };
    set_aside(store, table, key, &raw, &full, &short);
    None
}

/// Logs, counts and moves aside the undecodable record `raw` at `table/key`. A
/// replica that may not write (not the cell's leader) leaves it in place; the
/// leader moves it when it next reads it (at the latest when it takes the lead).
pub fn set_aside<S: Store + ?Sized>(
    store: &S,
    table: &str,
    key: &str,
    raw: &str,
    reason: &str,
    short: &str,
) {
    let stats = store.quarantine_stats();
    stats.undecodable.fetch_add(1, Ordering::Relaxed);
    let utf8 = !raw.starts_with(NOT_UTF8);
    let mut kept = raw.strip_prefix(NOT_UTF8).unwrap_or(raw);
    if kept.len() > MAX_RAW {
        let mut end = MAX_RAW;
        while !kept.is_char_boundary(end) {
            end -= 1;
        }
        kept = &kept[..end];
    }
    let rec = QuarantinedRecord {
        table: table.into(),
        key: key.into(),
        reason: reason.chars().take(1024).collect(),
        raw: kept.into(),
        utf8,
        quarantined_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
    };
    let moved = serde_json::to_string(&rec)
        .map_err(StoreError::from)
        .and_then(|doc| store.quarantine(table, key, raw, doc));
    match moved {
        Ok(true) => {
            stats.quarantined.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                table,
                key,
                reason = short,
                "undecodable record moved to the quarantine table"
            );
        }
        Ok(false) => tracing::debug!(table, key, "undecodable record changed meanwhile"),
        Err(e) => tracing::warn!(
            table,
            key,
            reason = short,
            "undecodable record skipped, not moved aside: {e}"
        ),
    }
}

/// The key of a quarantined record.
pub fn key_of(table: &str, key: &str) -> String {
    format!("{table}/{key}")
}
