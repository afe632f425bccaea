//! Embedded SQLite store: one `kv` table, WAL journal with `synchronous=FULL`, so a
//! write acknowledged by [`Store::write`] is on disk and survives kill -9 or a
//! power loss. Values (and keys) that are not text, or not UTF-8 (a file edited by
//! hand), are read as [`quarantine::text_of`] gives them, never as an error.

use super::quarantine::{self, QuarantineStats};
use super::{Store, StoreError, Write};
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

/// A SQLite database file.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    stats: QuarantineStats,
}

/// A column as text, whatever SQLite holds there.
fn text(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Text(b) | ValueRef::Blob(b) => quarantine::text_of(b),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Null => String::new(),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (
                tbl TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                PRIMARY KEY (tbl, key)) WITHOUT ROWID;",
        )?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            stats: QuarantineStats::default(),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        crate::sync::lock(&self.conn)
    }
}

impl Store for SqliteStore {
    fn get(&self, table: &str, key: &str) -> Result<Option<String>, StoreError> {
        let c = self.conn();
        let mut st = c.prepare_cached("SELECT value FROM kv WHERE tbl = ?1 AND key = ?2")?;
        Ok(st
            .query_row(params![table, key], |r| Ok(text(r.get_ref(0)?)))
            .optional()?)
    }

    fn scan(&self, table: &str, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let c = self.conn();
        let mut st = c.prepare_cached(
            "SELECT key, value FROM kv WHERE tbl = ?1 AND key >= ?2 \
             AND substr(key, 1, length(?2)) = ?2 ORDER BY key",
        )?;
        let rows = st.query_map(params![table, prefix], |r| {
            Ok((text(r.get_ref(0)?), text(r.get_ref(1)?)))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn write(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        for w in batch {
            match w {
                Write::Put { table, key, value } => {
                    tx.prepare_cached(
                        "INSERT INTO kv (tbl, key, value) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute(params![table, key, value])?;
                }
                Write::Delete { table, key } => {
                    tx.prepare_cached("DELETE FROM kv WHERE tbl = ?1 AND key = ?2")?
                        .execute(params![table, key])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn insert_new(
        &self,
        table: &'static str,
        key: &str,
        value: String,
    ) -> Result<String, StoreError> {
        let c = self.conn();
        c.prepare_cached("INSERT OR IGNORE INTO kv (tbl, key, value) VALUES (?1, ?2, ?3)")?
            .execute(params![table, key, value])?;
        let mut st = c.prepare_cached("SELECT value FROM kv WHERE tbl = ?1 AND key = ?2")?;
        Ok(st.query_row(params![table, key], |r| Ok(text(r.get_ref(0)?)))?)
    }

    fn quarantine(
        &self,
        table: &str,
        key: &str,
        raw: &str,
        record: String,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let removed = if raw.starts_with(quarantine::NOT_UTF8) {
            tx.prepare_cached("DELETE FROM kv WHERE tbl = ?1 AND key = ?2")?
                .execute(params![table, key])?
        } else {
            // Compared as bytes: a value stored as a BLOB (by hand) matches too.
            tx.prepare_cached(
                "DELETE FROM kv WHERE tbl = ?1 AND key = ?2 \
                 AND CAST(value AS BLOB) = CAST(?3 AS BLOB)",
            )?
            .execute(params![table, key, raw])?
        };
        if removed == 0 {
            return Ok(false);
        }
        tx.prepare_cached(
            "INSERT INTO kv (tbl, key, value) VALUES (?1, ?2, ?3) \
             ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![
            quarantine::TABLE,
            quarantine::key_of(table, key),
            record
        ])?;
        tx.commit()?;
        Ok(true)
    }

    fn quarantine_stats(&self) -> &QuarantineStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreExt;

    #[test]
    fn conforms() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("c.db")).unwrap();
        crate::store::conformance(&s);
    }

    #[test]
    fn put_scan_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        {
            let s = SqliteStore::open(&p).unwrap();
            s.put_json("t", "a/1", &1u32).unwrap();
            s.put_json("t", "a/2", &2u32).unwrap();
            s.put_json("t", "b/1", &3u32).unwrap();
            s.put_json("u", "a/9", &4u32).unwrap();
            let v: Vec<(String, u32)> = s.scan_json("t", "a/").unwrap();
            assert_eq!(v, vec![("a/1".into(), 1), ("a/2".into(), 2)]);
            s.write(vec![
                Write::Delete {
                    table: "t",
                    key: "a/1".into(),
                },
                Write::put("t", "a/3", &5u32).unwrap(),
            ])
            .unwrap();
        }
        let s = SqliteStore::open(&p).unwrap();
        let v: Vec<(String, u32)> = s.scan_json("t", "a").unwrap();
        assert_eq!(v, vec![("a/2".into(), 2), ("a/3".into(), 5)]);
        assert_eq!(s.get_json::<u32>("t", "a/1").unwrap(), None);
        assert_eq!(s.get_json::<u32>("u", "a/9").unwrap(), Some(4));
    }

    #[test]
    fn values_that_are_not_text_are_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.db");
        let s = SqliteStore::open(&p).unwrap();
        s.put_json("t", "a/ok", &1u32).unwrap();
        {
            let c = Connection::open(&p).unwrap();
            c.execute(
                "INSERT INTO kv (tbl, key, value) VALUES ('t', 'a/blob', X'7b22ff')",
                [],
            )
            .unwrap();
            c.execute(
                "INSERT INTO kv (tbl, key, value) VALUES ('t', 'a/text', CAST(X'7b2261223a22ff' AS TEXT))",
                [],
            )
            .unwrap();
        }
        let v: Vec<(String, u32)> = s.scan_json("t", "a/").unwrap();
        assert_eq!(v, vec![("a/ok".into(), 1)]);
        assert_eq!(s.quarantine_stats().get(), (2, 2));
        let q: Vec<(String, quarantine::QuarantinedRecord)> =
            s.scan_json(quarantine::TABLE, "").unwrap();
        assert_eq!(q.len(), 2);
        assert!(q.iter().all(|(_, r)| !r.utf8), "{q:?}");
    }
}
