//! The log store's management side: creating and deleting streams and groups,
//! retention policies (and the sweep that enforces them) and group tags.

use super::store::{LogStore, StoreResult};
use rusqlite::{params, OptionalExtension, Transaction};
use std::collections::BTreeMap;

/// One day in ms.
const DAY_MS: i64 = 24 * 3600 * 1000;

/// What a tag update did.
#[derive(Debug, PartialEq, Eq)]
pub enum TagOutcome {
    /// Applied.
    Done,
    /// No such group.
    NoGroup,
    /// The group would carry more than the allowed number of tags (nothing changed).
    TooMany,
}

fn group_exists(tx: &Transaction<'_>, account: &str, group: &str) -> StoreResult<bool> {
    Ok(tx
        .query_row(
            "SELECT 1 FROM log_groups WHERE account = ?1 AND name = ?2",
            params![account, group],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

impl LogStore {
    /// Creates a stream: `None` if the group does not exist, else whether it is new.
    pub fn create_stream(
        &self,
        account: &str,
        group: &str,
        stream: &str,
        now: i64,
    ) -> StoreResult<Option<bool>> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        if !group_exists(&tx, account, group)? {
            return Ok(None);
        }
        let n = tx.execute(
            "INSERT OR IGNORE INTO log_streams(account, grp, name, created) VALUES (?1, ?2, ?3, ?4)",
            params![account, group, stream, now],
        )?;
        tx.commit()?;
        Ok(Some(n == 1))
    }

    /// Deletes a stream and its events; false if it did not exist.
    pub fn delete_stream(&self, account: &str, group: &str, stream: &str) -> StoreResult<bool> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let n = tx.execute(
            "DELETE FROM log_streams WHERE account = ?1 AND grp = ?2 AND name = ?3",
            params![account, group, stream],
        )?;
        tx.execute(
            "DELETE FROM log_events WHERE account = ?1 AND grp = ?2 AND stream = ?3",
            params![account, group, stream],
        )?;
        tx.commit()?;
        Ok(n == 1)
    }

    /// Deletes a group with its streams, events, retention and tags; false if it did
    /// not exist.
    pub fn delete_group(&self, account: &str, group: &str) -> StoreResult<bool> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let n = tx.execute(
            "DELETE FROM log_groups WHERE account = ?1 AND name = ?2",
            params![account, group],
        )?;
        for table in [
            "log_streams",
            "log_events",
            "log_group_retention",
            "log_group_tags",
        ] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE account = ?1 AND grp = ?2"),
                params![account, group],
            )?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// Sets (`Some(days)`) or removes the retention of a group; false if the group
    /// does not exist.
    pub fn set_retention(
        &self,
        account: &str,
        group: &str,
        days: Option<i64>,
    ) -> StoreResult<bool> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        if !group_exists(&tx, account, group)? {
            return Ok(false);
        }
        match days {
            Some(d) => tx.execute(
                "INSERT OR REPLACE INTO log_group_retention(account, grp, days) VALUES (?1, ?2, ?3)",
                params![account, group, d],
            )?,
            None => tx.execute(
                "DELETE FROM log_group_retention WHERE account = ?1 AND grp = ?2",
                params![account, group],
            )?,
        };
        tx.commit()?;
        Ok(true)
    }

    /// `None` if the group does not exist, else the oldest timestamp its retention
    /// lets a read return at `now` (`i64::MIN` without retention).
    pub fn retained_from(&self, account: &str, group: &str, now: i64) -> StoreResult<Option<i64>> {
        let row: Option<Option<i64>> = self
            .conn()
            .query_row(
                "SELECT (SELECT r.days FROM log_group_retention r
                         WHERE r.account = g.account AND r.grp = g.name)
                 FROM log_groups g WHERE g.account = ?1 AND g.name = ?2",
                params![account, group],
                |r| r.get(0),
            )
            .optional()?;
        Ok(row.map(|days| match days {
            Some(d) => now.saturating_sub(d.saturating_mul(DAY_MS)),
            None => i64::MIN,
        }))
    }

    /// Deletes at most `batch` events that are older than their group's retention at
    /// `now` (the stream byte counts follow); returns how many were deleted.
    pub fn sweep_expired(&self, now: i64, batch: usize) -> StoreResult<usize> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let rows: Vec<(String, String, String, i64)> = {
            let mut st = tx.prepare(
                "DELETE FROM log_events WHERE id IN (
                    SELECT e.id FROM log_group_retention r JOIN log_events e
                      ON e.account = r.account AND e.grp = r.grp AND e.ts < ?1 - r.days * ?2
                    LIMIT ?3)
                 RETURNING account, grp, stream, length(CAST(message AS BLOB))",
            )?;
            let r = st.query_map(params![now, DAY_MS, batch as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            r.collect::<StoreResult<_>>()?
        };
        let mut freed: BTreeMap<(&str, &str, &str), i64> = BTreeMap::new();
        for (a, g, s, b) in &rows {
            *freed.entry((a, g, s)).or_default() += b;
        }
        for ((a, g, s), b) in freed {
            tx.execute(
                "UPDATE log_streams SET bytes = MAX(bytes - ?4, 0)
                 WHERE account = ?1 AND grp = ?2 AND name = ?3",
                params![a, g, s, b],
            )?;
        }
        tx.commit()?;
        Ok(rows.len())
    }

    /// The tags of a group; `None` if it does not exist.
    pub fn tags(
        &self,
        account: &str,
        group: &str,
    ) -> StoreResult<Option<BTreeMap<String, String>>> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        if !group_exists(&tx, account, group)? {
            return Ok(None);
        }
        let mut st =
            tx.prepare("SELECT key, value FROM log_group_tags WHERE account = ?1 AND grp = ?2")?;
        let rows = st.query_map(params![account, group], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(Some(rows.collect::<StoreResult<_>>()?))
    }

    /// Adds `add` and removes `remove` from a group's tags, keeping at most `max`.
    pub fn update_tags(
        &self,
        account: &str,
        group: &str,
        add: &BTreeMap<String, String>,
        remove: &[String],
        max: usize,
    ) -> StoreResult<TagOutcome> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        if !group_exists(&tx, account, group)? {
            return Ok(TagOutcome::NoGroup);
        }
        for k in remove {
            tx.execute(
                "DELETE FROM log_group_tags WHERE account = ?1 AND grp = ?2 AND key = ?3",
                params![account, group, k],
            )?;
        }
        for (k, v) in add {
            tx.execute(
                "INSERT OR REPLACE INTO log_group_tags(account, grp, key, value)
                 VALUES (?1, ?2, ?3, ?4)",
                params![account, group, k, v],
            )?;
        }
        let n: i64 = tx.query_row(
            "SELECT COUNT(*) FROM log_group_tags WHERE account = ?1 AND grp = ?2",
            params![account, group],
            |r| r.get(0),
        )?;
        if n as usize > max {
            return Ok(TagOutcome::TooMany);
        }
        tx.commit()?;
        Ok(TagOutcome::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::store::Create;

    #[test]
    fn retention_sweep_tags_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let s = LogStore::open(&dir.path().join("logs.db"), 1000).unwrap();
        let now = 100 * DAY_MS;
        assert_eq!(s.create_stream("1", "g", "s", now).unwrap(), None);
        assert!(s.create_group("1", "g", now).unwrap());
        assert_eq!(s.create_stream("1", "g", "s", now).unwrap(), Some(true));
        assert_eq!(s.create_stream("1", "g", "s", now).unwrap(), Some(false));
        let ev: Vec<(i64, String)> = (0..10)
            .map(|i| (now - (10 - i) * DAY_MS, format!("e{i}")))
            .collect();
        s.append("1", "g", "s", &ev, Create::Nothing, now).unwrap();
        assert_eq!(s.retained_from("1", "g", now).unwrap(), Some(i64::MIN));
        assert!(s.set_retention("1", "g", Some(3)).unwrap());
        assert!(!s.set_retention("2", "g", Some(3)).unwrap());
        assert_eq!(
            s.retained_from("1", "g", now).unwrap(),
            Some(now - 3 * DAY_MS)
        );
        // Bounded batches: 7 expired events, 4 then 3 then none.
        assert_eq!(s.sweep_expired(now, 4).unwrap(), 4);
        assert_eq!(s.sweep_expired(now, 4).unwrap(), 3);
        assert_eq!(s.sweep_expired(now, 4).unwrap(), 0);
        assert_eq!(s.event_count().unwrap(), 3);
        let st = &s.streams("1", "g", "", false, false, 0, 10).unwrap()[0];
        assert_eq!(st.stored_bytes, 6);
        let add: BTreeMap<String, String> = [("a".into(), "1".into()), ("b".into(), "2".into())]
            .into_iter()
            .collect();
        assert_eq!(
            s.update_tags("1", "g", &add, &[], 50).unwrap(),
            TagOutcome::Done
        );
        assert_eq!(
            s.update_tags("1", "g", &add, &[], 1).unwrap(),
            TagOutcome::TooMany
        );
        assert_eq!(
            s.update_tags("2", "g", &add, &[], 50).unwrap(),
            TagOutcome::NoGroup
        );
        s.update_tags("1", "g", &BTreeMap::new(), &["a".into()], 50)
            .unwrap();
        assert_eq!(s.tags("1", "g").unwrap().unwrap().len(), 1);
        assert!(s.delete_stream("1", "g", "s").unwrap());
        assert!(!s.delete_stream("1", "g", "s").unwrap());
        assert_eq!(s.event_count().unwrap(), 0);
        assert!(s.delete_group("1", "g").unwrap());
        assert!(!s.group_exists("1", "g").unwrap());
        assert!(s.create_group("1", "g", now).unwrap());
        assert_eq!(
            s.tags("1", "g").unwrap().unwrap().len(),
            0,
            "tags went with the group"
        );
        assert_eq!(s.retained_from("1", "g", now).unwrap(), Some(i64::MIN));
    }
}
