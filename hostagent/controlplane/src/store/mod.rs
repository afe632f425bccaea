//! The state store: ordered tables of JSON documents with atomic batches. SQLite is
//! the embedded implementation; the trait keeps the rest of the control plane
//! independent of it so a distributed store (etcd) can stand in.

pub mod sqlite;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored document does not parse.
    #[error("corrupt document {table}/{key}: {err}")]
    Corrupt {
        /// Table.
        table: String,
        /// Key.
        key: String,
        /// Parse error.
        err: serde_json::Error,
    },
    /// A file system error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A document could not be encoded.
    #[error("encode: {0}")]
    Encode(#[from] serde_json::Error),
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
    /// Applies all writes atomically.
    fn write(&self, batch: Vec<Write>) -> Result<(), StoreError>;
}

/// Typed helpers over any [`Store`].
pub trait StoreExt: Store {
    /// Reads and decodes one document.
    fn get_json<T: DeserializeOwned>(
        &self,
        table: &str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.get(table, key)? {
            None => Ok(None),
            Some(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|err| StoreError::Corrupt {
                    table: table.into(),
                    key: key.into(),
                    err,
                }),
        }
    }
    /// Reads and decodes every document under `prefix`.
    fn scan_json<T: DeserializeOwned>(
        &self,
        table: &str,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        self.scan(table, prefix)?
            .into_iter()
            .map(|(k, v)| match serde_json::from_str(&v) {
                Ok(t) => Ok((k, t)),
                Err(err) => Err(StoreError::Corrupt {
                    table: table.into(),
                    key: k,
                    err,
                }),
            })
            .collect()
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
/// implementation's tests (today SQLite; an etcd store would call it too).
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
}
