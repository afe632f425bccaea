//! The log store of one cell: its own SQLite file (`logs-N.db`), separate from the
//! cell's state store. Log groups, streams and events, all keyed by account. Writes
//! are batched (one transaction per agent batch); retention keeps the newest
//! `retention` events of the file.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

/// A store error (the API answers `ServiceUnavailableException`).
pub type StoreResult<T> = Result<T, rusqlite::Error>;

/// Position of an event in a stream or group: (timestamp, id).
pub type Pos = (i64, i64);

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its id (insertion order).
    pub id: i64,
    /// Stream name.
    pub stream: String,
    /// Timestamp (ms).
    pub timestamp: i64,
    /// When it was stored (ms).
    pub ingestion_time: i64,
    /// The line.
    pub message: String,
}

impl Event {
    /// Its position.
    pub fn pos(&self) -> Pos {
        (self.timestamp, self.id)
    }
}

/// A log group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Name.
    pub name: String,
    /// Creation time (ms).
    pub created: i64,
    /// Bytes of its events.
    pub stored_bytes: i64,
    /// Retention in days, if set.
    pub retention_days: Option<i64>,
}

/// A log stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// Name.
    pub name: String,
    /// Creation time (ms).
    pub created: i64,
    /// Oldest event timestamp.
    pub first_ts: Option<i64>,
    /// Newest event timestamp.
    pub last_ts: Option<i64>,
    /// Last ingestion time.
    pub last_ingest: Option<i64>,
    /// Bytes of its events.
    pub stored_bytes: i64,
}

/// Which streams of a group a filter searches.
pub enum Streams<'a> {
    /// All of them.
    All,
    /// These names.
    Names(&'a [String]),
    /// Names starting with this.
    Prefix(&'a str),
}

/// What an append may create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Nothing: the group and the stream must exist (PutLogEvents).
    Nothing,
    /// The stream (the awslogs driver).
    Stream,
    /// The group and the stream (`awslogs-create-group`).
    GroupAndStream,
}

/// Why an append stored nothing.
#[derive(Debug)]
pub enum AppendError {
    /// The group does not exist and may not be created.
    NoGroup,
    /// The stream does not exist and may not be created.
    NoStream,
    /// Store failure.
    Store(rusqlite::Error),
}

impl From<rusqlite::Error> for AppendError {
    fn from(e: rusqlite::Error) -> Self {
        AppendError::Store(e)
    }
}

/// One cell's log store.
pub struct LogStore {
    conn: Mutex<Connection>,
    retention: u64,
}

impl LogStore {
    /// Opens (creates) the store at `path`, keeping at most `retention` events.
    pub fn open(path: &Path, retention: u64) -> StoreResult<LogStore> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS log_groups(account TEXT NOT NULL, name TEXT NOT NULL,
                created INTEGER NOT NULL, PRIMARY KEY(account, name));
             CREATE TABLE IF NOT EXISTS log_streams(account TEXT NOT NULL, grp TEXT NOT NULL,
                name TEXT NOT NULL, created INTEGER NOT NULL, first_ts INTEGER, last_ts INTEGER,
                last_ingest INTEGER, bytes INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY(account, grp, name));
             CREATE TABLE IF NOT EXISTS log_events(id INTEGER PRIMARY KEY AUTOINCREMENT,
                account TEXT NOT NULL, grp TEXT NOT NULL, stream TEXT NOT NULL,
                ts INTEGER NOT NULL, ingest INTEGER NOT NULL, message TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS log_events_stream ON log_events(account, grp, stream, ts, id);
             CREATE INDEX IF NOT EXISTS log_events_group ON log_events(account, grp, ts, id);
             CREATE TABLE IF NOT EXISTS log_group_retention(account TEXT NOT NULL,
                grp TEXT NOT NULL, days INTEGER NOT NULL, PRIMARY KEY(account, grp));
             CREATE TABLE IF NOT EXISTS log_group_tags(account TEXT NOT NULL, grp TEXT NOT NULL,
                key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(account, grp, key));",
        )?;
        Ok(LogStore {
            conn: Mutex::new(conn),
            retention: retention.max(1),
        })
    }

    pub(super) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        crate::sync::lock(&self.conn)
    }

    /// Creates a group; false if it existed.
    pub fn create_group(&self, account: &str, name: &str, now: i64) -> StoreResult<bool> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO log_groups(account, name, created) VALUES (?1, ?2, ?3)",
            params![account, name, now],
        )?;
        Ok(n == 1)
    }

    /// Whether the group exists.
    pub fn group_exists(&self, account: &str, name: &str) -> StoreResult<bool> {
        self.conn()
            .query_row(
                "SELECT 1 FROM log_groups WHERE account = ?1 AND name = ?2",
                params![account, name],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
    }

    /// Groups whose name starts with `prefix`, after name `after`, at most `limit`.
    pub fn groups(
        &self,
        account: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Group>> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT g.name, g.created,
                (SELECT COALESCE(SUM(s.bytes), 0) FROM log_streams s
                 WHERE s.account = g.account AND s.grp = g.name),
                (SELECT r.days FROM log_group_retention r
                 WHERE r.account = g.account AND r.grp = g.name)
             FROM log_groups g
             WHERE g.account = ?1 AND substr(g.name, 1, length(?2)) = ?2 AND g.name > ?3
             ORDER BY g.name LIMIT ?4",
        )?;
        let rows = st.query_map(
            params![account, prefix, after.unwrap_or(""), limit as i64],
            |r| {
                Ok(Group {
                    name: r.get(0)?,
                    created: r.get(1)?,
                    stored_bytes: r.get(2)?,
                    retention_days: r.get(3)?,
                })
            },
        )?;
        rows.collect()
    }

    /// Streams of a group: name prefix, ordered by name or by last event time.
    #[allow(clippy::too_many_arguments)]
    pub fn streams(
        &self,
        account: &str,
        group: &str,
        prefix: &str,
        by_last_event: bool,
        descending: bool,
        offset: usize,
        limit: usize,
    ) -> StoreResult<Vec<Stream>> {
        let order = match (by_last_event, descending) {
            (false, false) => "name ASC",
            (false, true) => "name DESC",
            (true, false) => "COALESCE(last_ts, 0) ASC, name ASC",
            (true, true) => "COALESCE(last_ts, 0) DESC, name DESC",
        };
        let c = self.conn();
        let mut st = c.prepare(&format!(
            "SELECT name, created, first_ts, last_ts, last_ingest, bytes FROM log_streams
             WHERE account = ?1 AND grp = ?2 AND substr(name, 1, length(?3)) = ?3
             ORDER BY {order} LIMIT ?4 OFFSET ?5"
        ))?;
        let rows = st.query_map(
            params![account, group, prefix, limit as i64, offset as i64],
            |r| {
                Ok(Stream {
                    name: r.get(0)?,
                    created: r.get(1)?,
                    first_ts: r.get(2)?,
                    last_ts: r.get(3)?,
                    last_ingest: r.get(4)?,
                    stored_bytes: r.get(5)?,
                })
            },
        )?;
        rows.collect()
    }

    /// Whether the stream exists.
    pub fn stream_exists(&self, account: &str, group: &str, stream: &str) -> StoreResult<bool> {
        self.conn()
            .query_row(
                "SELECT 1 FROM log_streams WHERE account = ?1 AND grp = ?2 AND name = ?3",
                params![account, group, stream],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
    }

    /// Appends `events` (timestamp, line) to a stream, creating the stream (and the
    /// group) as `create` allows, in one transaction; applies retention.
    pub fn append(
        &self,
        account: &str,
        group: &str,
        stream: &str,
        events: &[(i64, String)],
        create: Create,
        now: i64,
    ) -> Result<usize, AppendError> {
        if events.is_empty() {
            return Ok(0);
        }
        let mut c = self.conn();
        let tx = c.transaction()?;
        if create == Create::GroupAndStream {
            tx.execute(
                "INSERT OR IGNORE INTO log_groups(account, name, created) VALUES (?1, ?2, ?3)",
                params![account, group, now],
            )?;
        }
        let exists = tx
            .query_row(
                "SELECT 1 FROM log_groups WHERE account = ?1 AND name = ?2",
                params![account, group],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !exists {
            return Err(AppendError::NoGroup);
        }
        if create == Create::Nothing {
            let found = tx
                .query_row(
                    "SELECT 1 FROM log_streams WHERE account = ?1 AND grp = ?2 AND name = ?3",
                    params![account, group, stream],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !found {
                return Err(AppendError::NoStream);
            }
        } else {
            tx.execute(
                "INSERT OR IGNORE INTO log_streams(account, grp, name, created) VALUES (?1, ?2, ?3, ?4)",
                params![account, group, stream, now],
            )?;
        }
        let (mut lo, mut hi, mut bytes) = (i64::MAX, i64::MIN, 0i64);
        let mut last_id = 0;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO log_events(account, grp, stream, ts, ingest, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (ts, msg) in events {
                ins.execute(params![account, group, stream, ts, now, msg])?;
                lo = lo.min(*ts);
                hi = hi.max(*ts);
                bytes += msg.len() as i64;
            }
            last_id = last_id.max(tx.last_insert_rowid());
        }
        tx.execute(
            "UPDATE log_streams SET first_ts = MIN(COALESCE(first_ts, ?4), ?4),
                last_ts = MAX(COALESCE(last_ts, ?5), ?5), last_ingest = ?6, bytes = bytes + ?7
             WHERE account = ?1 AND grp = ?2 AND name = ?3",
            params![account, group, stream, lo, hi, now, bytes],
        )?;
        let cut = last_id - self.retention as i64;
        if cut > 0 {
            tx.execute("DELETE FROM log_events WHERE id <= ?1", params![cut])?;
        }
        tx.commit()?;
        Ok(events.len())
    }

    /// Events of one stream in `[start, end)`: forward (ascending, after `pos`) or
    /// backward (the last `limit` before `pos`), returned in ascending order.
    #[allow(clippy::too_many_arguments)]
    pub fn stream_events(
        &self,
        account: &str,
        group: &str,
        stream: &str,
        start: i64,
        end: i64,
        pos: Pos,
        forward: bool,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        let (cmp, order) = if forward { (">", "ASC") } else { ("<", "DESC") };
        let c = self.conn();
        let mut st = c.prepare_cached(&format!(
            "SELECT id, ts, ingest, message FROM log_events
             WHERE account = ?1 AND grp = ?2 AND stream = ?3 AND ts >= ?4 AND ts < ?5
               AND (ts, id) {cmp} (?6, ?7)
             ORDER BY ts {order}, id {order} LIMIT ?8"
        ))?;
        let rows = st.query_map(
            params![
                account,
                group,
                stream,
                start,
                end,
                pos.0,
                pos.1,
                limit as i64
            ],
            |r| {
                Ok(Event {
                    id: r.get(0)?,
                    stream: stream.to_string(),
                    timestamp: r.get(1)?,
                    ingestion_time: r.get(2)?,
                    message: r.get(3)?,
                })
            },
        )?;
        let mut v = rows.collect::<StoreResult<Vec<_>>>()?;
        if !forward {
            v.reverse();
        }
        Ok(v)
    }

    /// Events of a group's `streams` in `[start, end)` after `pos`, ascending by
    /// (timestamp, id), at most `limit` rows.
    #[allow(clippy::too_many_arguments)]
    pub fn group_events(
        &self,
        account: &str,
        group: &str,
        streams: &Streams<'_>,
        start: i64,
        end: i64,
        pos: Pos,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        let mut sql = String::from(
            "SELECT id, stream, ts, ingest, message FROM log_events
             WHERE account = ? AND grp = ? AND ts >= ? AND ts < ? AND (ts, id) > (?, ?)",
        );
        let mut args: Vec<rusqlite::types::Value> = vec![
            account.to_string().into(),
            group.to_string().into(),
            start.into(),
            end.into(),
            pos.0.into(),
            pos.1.into(),
        ];
        match streams {
            Streams::All => {}
            Streams::Names(names) => {
                sql.push_str(" AND stream IN (");
                sql.push_str(&vec!["?"; names.len()].join(","));
                sql.push(')');
                args.extend(names.iter().map(|n| n.clone().into()));
            }
            Streams::Prefix(p) => {
                sql.push_str(" AND substr(stream, 1, length(?)) = ?");
                args.push(p.to_string().into());
                args.push(p.to_string().into());
            }
        }
        sql.push_str(" ORDER BY ts, id LIMIT ?");
        args.push((limit as i64).into());
        let c = self.conn();
        let mut st = c.prepare(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), |r| {
            Ok(Event {
                id: r.get(0)?,
                stream: r.get(1)?,
                timestamp: r.get(2)?,
                ingestion_time: r.get(3)?,
                message: r.get(4)?,
            })
        })?;
        rows.collect()
    }

    /// Number of events stored (all accounts).
    pub fn event_count(&self) -> StoreResult<i64> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM log_events", [], |r| r.get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_read_both_ways_and_retention() {
        let dir = tempfile::tempdir().unwrap();
        let s = LogStore::open(&dir.path().join("logs.db"), 5).unwrap();
        let ev = |v: &[(i64, &str)]| {
            v.iter()
                .map(|(t, m)| (*t, m.to_string()))
                .collect::<Vec<_>>()
        };
        assert!(matches!(
            s.append("1", "g", "s", &ev(&[(1, "a")]), Create::Stream, 100),
            Err(AppendError::NoGroup)
        ));
        assert_eq!(
            s.append(
                "1",
                "g",
                "s",
                &ev(&[(10, "a"), (20, "b")]),
                Create::GroupAndStream,
                100
            )
            .unwrap(),
            2
        );
        assert_eq!(
            s.append("1", "g", "s", &ev(&[(30, "c")]), Create::Stream, 101)
                .unwrap(),
            1
        );
        assert!(!s.group_exists("2", "g").unwrap(), "groups are per account");
        let all = s
            .stream_events("1", "g", "s", 0, i64::MAX, (i64::MIN, 0), true, 10)
            .unwrap();
        assert_eq!(
            all.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let last2 = s
            .stream_events("1", "g", "s", 0, i64::MAX, (i64::MAX, 0), false, 2)
            .unwrap();
        assert_eq!(
            last2.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        let window = s
            .stream_events("1", "g", "s", 10, 30, (i64::MIN, 0), true, 10)
            .unwrap();
        assert_eq!(window.len(), 2, "endTime is exclusive");
        let st = &s.streams("1", "g", "", false, false, 0, 10).unwrap()[0];
        assert_eq!(
            (st.first_ts, st.last_ts, st.stored_bytes),
            (Some(10), Some(30), 3)
        );
        s.append(
            "1",
            "g",
            "t",
            &ev(&[(5, "x"), (6, "y"), (7, "z")]),
            Create::Stream,
            102,
        )
        .unwrap();
        assert_eq!(s.event_count().unwrap(), 5, "retention keeps the newest 5");
        let g = s
            .group_events("1", "g", &Streams::All, 0, i64::MAX, (i64::MIN, 0), 100)
            .unwrap();
        assert_eq!(
            g.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
            ["x", "y", "z", "b", "c"]
        );
        let names = ["t".to_string()];
        let g = s
            .group_events(
                "1",
                "g",
                &Streams::Names(&names),
                0,
                i64::MAX,
                (5, i64::MAX),
                100,
            )
            .unwrap();
        assert_eq!(g.len(), 2);
        let g = s
            .group_events(
                "1",
                "g",
                &Streams::Prefix("s"),
                0,
                i64::MAX,
                (i64::MIN, 0),
                100,
            )
            .unwrap();
        assert_eq!(g.len(), 2);
    }
}
