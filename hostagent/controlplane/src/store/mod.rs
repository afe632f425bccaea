//! The state store: ordered tables of JSON documents with atomic batches. SQLite is
//! the embedded implementation; the trait keeps the rest of the control plane
//! independent of it so a distributed store (etcd) can stand in.
//!
//! A stored record that does not decode is never an error of the call that read
//! it: [`StoreExt`] sets it aside ([`quarantine`]) and reads it as absent.

pub mod etcd;
pub mod etcd_process;
pub mod quarantine;
pub mod sqlite;

use quarantine::QuarantineStats;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file system error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A document could not be encoded.
    #[error("encode: {0}")]
    Encode(#[from] serde_json::Error),
    /// etcd failed or could not be reached.
    #[error("etcd: {0}")]
    Etcd(String),
    /// The write was refused because this replica does not hold the cell's
    /// leadership (or lost it): the fence in the etcd transaction did not match.
    #[error("not the leader of this cell{}", leader_hint(.leader))]
    NotLeader {
        /// What the current leader advertises (its API address), if known.
        leader: Option<String>,
    },
}

fn leader_hint(leader: &Option<String>) -> String {
    match leader {
        Some(l) => format!("; the leader is at {l}"),
        None => String::new(),
    }
}

/// One write of an atomic batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Insert or replace.
    Put {
        /// Table.
        table: &'static str,
        /// Key.
        key: String,
        /// JSON document.
        value: String,
    },
    /// Remove (no error if absent).
    Delete {
        /// Table.
        table: &'static str,
        /// Key.
        key: String,
    },
}

impl Write {
    /// A `Put` of `value` encoded as JSON.
    pub fn put<T: Serialize>(
        table: &'static str,
        key: impl Into<String>,
        value: &T,
    ) -> Result<Write, StoreError> {
        Ok(Write::Put {
            table,
            key: key.into(),
            value: serde_json::to_string(value)?,
        })
    }
}

/// A state store. Writes are durable when `write` returns.
pub trait Store: Send + Sync {
    /// The document at `table/key`.
    fn get(&self, table: &str, key: &str) -> Result<Option<String>, StoreError>;
    /// Documents of `table` whose key starts with `prefix`, in key order.
    fn scan(&self, table: &str, prefix: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Applies all writes atomically. Later writes of one key in a batch win.
    fn write(&self, batch: Vec<Write>) -> Result<(), StoreError>;
    /// Stores `value` at `table/key` only if nothing is there yet (atomically, also
    /// between replicas sharing an etcd store). Returns the document now stored:
    /// `value` if it was inserted, the earlier one otherwise.
    fn insert_new(
        &self,
        table: &'static str,
        key: &str,
        value: String,
    ) -> Result<String, StoreError>;
    /// Moves the record at `table/key` to [`quarantine::TABLE`] as `record`, in one
    /// atomic write, only if it still holds `raw` (as `get`/`scan` returned it; a
    /// value marked [`quarantine::NOT_UTF8`] is moved whatever it holds). Returns
    /// whether it moved.
    fn quarantine(
        &self,
        table: &str,
        key: &str,
        raw: &str,
        record: String,
    ) -> Result<bool, StoreError>;
    /// This store's quarantine counters.
    fn quarantine_stats(&self) -> &QuarantineStats;
}

/// Typed helpers over any [`Store`].
pub trait StoreExt: Store {
    /// Reads and decodes one document; one that does not decode is quarantined
    /// and reads as absent.
    fn get_json<T: DeserializeOwned>(
        &self,
        table: &str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        Ok(self
            .get(table, key)?
            .and_then(|raw| quarantine::decode(self, table, key, raw)))
    }
    /// Reads and decodes every document under `prefix`; those that do not decode
    /// are quarantined and left out.
    fn scan_json<T: DeserializeOwned>(
        &self,
        table: &str,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        Ok(self
            .scan(table, prefix)?
            .into_iter()
            .filter_map(|(k, raw)| quarantine::decode(self, table, &k, raw).map(|t| (k, t)))
            .collect())
    }
    /// Encodes and writes one document.
    fn put_json<T: Serialize>(
        &self,
        table: &'static str,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        self.write(vec![Write::put(table, key, value)?])
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

/// Behaviour every [`Store`] implementation must have; run by each
/// implementation's tests (SQLite, and etcd against a real `/usr/bin/etcd`).
#[cfg(test)]
pub fn conformance(s: &dyn Store) {
    assert_eq!(s.get("t", "missing").unwrap(), None);
    s.write(vec![
        Write::put("t", "acct/b", &2).unwrap(),
        Write::put("t", "acct/a", &1).unwrap(),
        Write::put("t", "acct2/a", &3).unwrap(),
        Write::put("u", "acct/a", &4).unwrap(),
    ])
    .unwrap();
    // Ordered prefix scans, tables apart, prefix is a string prefix.
    let keys: Vec<String> = s
        .scan("t", "acct/")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec!["acct/a", "acct/b"]);
    assert_eq!(s.scan("t", "acct").unwrap().len(), 3);
    assert_eq!(s.scan("t", "").unwrap().len(), 3);
    assert_eq!(s.get_json::<i32>("u", "acct/a").unwrap(), Some(4));
    // Overwrite and delete in one batch.
    s.write(vec![
        Write::put("t", "acct/a", &10).unwrap(),
        Write::Delete {
            table: "t",
            key: "acct/b".into(),
        },
        Write::Delete {
            table: "t",
            key: "never-there".into(),
        },
    ])
    .unwrap();
    assert_eq!(s.get_json::<i32>("t", "acct/a").unwrap(), Some(10));
    assert_eq!(s.get("t", "acct/b").unwrap(), None);
    // Keys with SQL/glob metacharacters are plain strings.
    s.put_json("t", "x%_*/1", &5).unwrap();
    assert_eq!(s.scan("t", "x%").unwrap().len(), 1);
    assert_eq!(s.scan("t", "x_").unwrap().len(), 0);
    // A key written twice in one batch: the last write wins.
    s.write(vec![
        Write::put("t", "dup", &1).unwrap(),
        Write::put("t", "dup", &2).unwrap(),
    ])
    .unwrap();
    assert_eq!(s.get_json::<i32>("t", "dup").unwrap(), Some(2));
    s.write(vec![
        Write::put("t", "dup", &3).unwrap(),
        Write::Delete {
            table: "t",
            key: "dup".into(),
        },
    ])
    .unwrap();
    assert_eq!(s.get("t", "dup").unwrap(), None);
    // Insert-if-absent keeps the first value.
    assert_eq!(s.insert_new("v", "k", "1".into()).unwrap(), "1");
    assert_eq!(s.insert_new("v", "k", "2".into()).unwrap(), "1");
    assert_eq!(s.get("v", "k").unwrap().as_deref(), Some("1"));
    // Large scans come back whole and in order (etcd pages them).
    let many: Vec<Write> = (0..2500)
        .map(|i| Write::put("big", format!("k{i:05}"), &i).unwrap())
        .collect();
    for chunk in many.chunks(100) {
        s.write(chunk.to_vec()).unwrap();
    }
    let all = s.scan_json::<i32>("big", "k").unwrap();
    assert_eq!(all.len(), 2500);
    assert!(all.iter().enumerate().all(|(i, (_, v))| *v == i as i32));
    // Undecodable records: skipped, moved aside once, counted; the rest served.
    let before = s.quarantine_stats().get();
    s.write(vec![
        Write::Put {
            table: "q",
            key: "a/1".into(),
            value: "{not json".into(),
        },
        Write::put("q", "a/2", &2).unwrap(),
        Write::Put {
            table: "q",
            key: "a/3".into(),
            value: "\"a string\"".into(),
        },
    ])
    .unwrap();
    let good = s.scan_json::<i32>("q", "a/").unwrap();
    assert_eq!(good, vec![("a/2".to_string(), 2)]);
    assert_eq!(s.get_json::<i32>("q", "a/3").unwrap(), None);
    assert_eq!(s.get("q", "a/1").unwrap(), None, "moved out of its table");
    let after = s.quarantine_stats().get();
    assert_eq!((after.0 - before.0, after.1 - before.1), (2, 2));
    let set_aside = s
        .scan_json::<quarantine::QuarantinedRecord>(quarantine::TABLE, "q/")
        .unwrap();
    assert_eq!(set_aside.len(), 2);
    assert_eq!(set_aside[0].0, "q/a/1");
    assert_eq!(set_aside[0].1.raw, "{not json");
    assert_eq!(set_aside[0].1.key, "a/1");
    assert!(
        set_aside[1].1.reason.contains("invalid type"),
        "{:?}",
        set_aside[1].1
    );
    // Only the bytes that failed are moved: a record rewritten meanwhile stays.
    s.put_json("q", "b", &7).unwrap();
    assert!(!s.quarantine("q", "b", "{old", "{}".into()).unwrap());
    assert_eq!(s.get_json::<i32>("q", "b").unwrap(), Some(7));
}
