//! Embedded SQLite store: one `kv` table, WAL journal with `synchronous=FULL`, so a
//! write acknowledged by [`Store::write`] is on disk and survives kill -9 or a
//! power loss.

use super::{Store, StoreError, Write};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

/// A SQLite database file.
pub struct SqliteStore {
    conn: Mutex<Connection>,
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
        Ok(st.query_row(params![table, key], |r| r.get(0)).optional()?)
    }

    fn scan(&self, table: &str, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let c = self.conn();
        let mut st = c.prepare_cached(
            "SELECT key, value FROM kv WHERE tbl = ?1 AND key >= ?2 \
             AND substr(key, 1, length(?2)) = ?2 ORDER BY key",
        )?;
        let rows = st.query_map(params![table, prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
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
        Ok(st.query_row(params![table, key], |r| r.get(0))?)
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
}
