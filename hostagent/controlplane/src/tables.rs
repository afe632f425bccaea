//! The tables of a cell's store, each behind one typed accessor that builds its keys
//! and decodes its records: nothing else formats a key or scans a table. A record
//! that does not decode reads as absent and is quarantined (`crate::store`), and
//! [`sweep`] does that for every table when a cell is loaded.

use crate::model::{
    AccountSetting, Cluster, ClusterStatus, HostRecord, Service, ServiceStatus, Tag,
    TaskDefinition, TaskRecord,
};
use crate::store::{quarantine, Store, StoreError, StoreExt, Write};

/// Store table names.
pub mod names {
    /// `{account}/{family}/{revision:010}` -> TaskDefinition.
    pub const TASK_DEFINITION: &str = "taskdef";
    /// `{account}/{family}/{revision:010}` -> the revision's tags (`Vec<Tag>`).
    pub const TASK_DEFINITION_TAGS: &str = "taskdef_tags";
    /// `{account}/{family}` -> last revision number (never reused).
    pub const FAMILY: &str = "family";
    /// `{account}/{name}` -> Cluster.
    pub const CLUSTER: &str = "cluster";
    /// `{account}/{cluster}/{id}` -> TaskRecord.
    pub const TASK: &str = "task";
    /// `{account}/{cluster}/{name}` -> Service.
    pub const SERVICE: &str = "service";
    /// `{account}/{name}/{principal ARN}` -> AccountSetting.
    pub const ACCOUNT_SETTING: &str = "account_setting";
    /// `{host id}` -> HostRecord.
    pub const HOST: &str = "host";
    /// `cluster/{account}/{name}` or `service/{account}/{cluster}/{name}` -> when
    /// the cluster or service became INACTIVE (seconds since the epoch).
    pub const INACTIVE_SINCE: &str = "inactive_since";
    /// Router: `{account}` -> cell number.
    pub const ACCOUNT_CELL: &str = "account_cell";
}

use names::*;

type Result<T> = std::result::Result<T, StoreError>;

/// The key of a task: `{account}/{cluster}/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskKey(String);

impl TaskKey {
    /// The key of task `id` of `account`'s `cluster`.
    pub fn new(account: &str, cluster: &str, id: &str) -> TaskKey {
        TaskKey(format!("{account}/{cluster}/{id}"))
    }

    /// The key of a task ARN (`arn:aws:ecs:<r>:<account>:task/<cluster>/<id>`).
    pub fn of_arn(arn: &str) -> Option<TaskKey> {
        let mut parts = arn.splitn(6, ':');
        let (a, p, s, _region, account, res) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if a != "arn" || p != "aws" || s != "ecs" {
            return None;
        }
        let rest = res.strip_prefix("task/")?;
        let (cluster, id) = rest.split_once('/')?;
        if cluster.is_empty() || id.is_empty() || id.contains('/') || account.is_empty() {
            return None;
        }
        Some(TaskKey::new(account, cluster, id))
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tasks: [`TaskRecord`]s by [`TaskKey`].
pub struct Tasks<'a>(pub &'a dyn Store);

impl Tasks<'_> {
    /// One task.
    pub fn get(&self, k: &TaskKey) -> Result<Option<TaskRecord>> {
        self.0.get_json(TASK, k.as_str())
    }

    /// Writes one task.
    pub fn put(&self, k: &TaskKey, rec: &TaskRecord) -> Result<()> {
        self.0.put_json(TASK, k.as_str(), rec)
    }

    /// The tasks of `account`'s `cluster`, by key (the keys order pages).
    pub fn in_cluster(&self, account: &str, cluster: &str) -> Result<Vec<(String, TaskRecord)>> {
        self.0.scan_json(TASK, &format!("{account}/{cluster}/"))
    }

    /// Removes the tasks `keys` in one atomic batch (absent ones are no error).
    pub fn delete_many(&self, keys: &[TaskKey]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.0.write(
            keys.iter()
                .map(|k| Write::Delete {
                    table: TASK,
                    key: k.as_str().to_string(),
                })
                .collect(),
        )
    }

    /// Every task of the cell.
    pub fn all(&self) -> Result<Vec<(TaskKey, TaskRecord)>> {
        Ok(self
            .0
            .scan_json(TASK, "")?
            .into_iter()
            .map(|(k, t)| (TaskKey(k), t))
            .collect())
    }
}

/// Where a service is: its account and cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOwner {
    /// The account.
    pub account: String,
    /// The cluster name.
    pub cluster: String,
}

/// The services: [`Service`]s by account, cluster and name.
pub struct Services<'a>(pub &'a dyn Store);

impl Services<'_> {
    fn key(account: &str, cluster: &str, name: &str) -> String {
        format!("{account}/{cluster}/{name}")
    }

    /// One service.
    pub fn get(&self, account: &str, cluster: &str, name: &str) -> Result<Option<Service>> {
        self.0.get_json(SERVICE, &Self::key(account, cluster, name))
    }

    /// Writes one service (under its name).
    pub fn put(&self, account: &str, cluster: &str, s: &Service) -> Result<()> {
        self.0
            .put_json(SERVICE, &Self::key(account, cluster, &s.service_name), s)
    }

    /// The services of `account`'s `cluster`, by key (the keys order pages).
    pub fn in_cluster(&self, account: &str, cluster: &str) -> Result<Vec<(String, Service)>> {
        self.0.scan_json(SERVICE, &format!("{account}/{cluster}/"))
    }

    /// Every service of the cell, with where it is.
    pub fn all(&self) -> Result<Vec<(ServiceOwner, Service)>> {
        Ok(self
            .0
            .scan_json::<Service>(SERVICE, "")?
            .into_iter()
            .filter_map(|(k, s)| {
                let mut parts = k.splitn(3, '/');
                let owner = ServiceOwner {
                    account: parts.next()?.to_string(),
                    cluster: parts.next()?.to_string(),
                };
                Some((owner, s))
            })
            .collect())
    }
}

/// The clusters: [`Cluster`]s by account and name.
pub struct Clusters<'a>(pub &'a dyn Store);

impl Clusters<'_> {
    /// One cluster.
    pub fn get(&self, account: &str, name: &str) -> Result<Option<Cluster>> {
        self.0.get_json(CLUSTER, &format!("{account}/{name}"))
    }

    /// Writes one cluster (under its name).
    pub fn put(&self, account: &str, cl: &Cluster) -> Result<()> {
        self.0
            .put_json(CLUSTER, &format!("{account}/{}", cl.cluster_name), cl)
    }

    /// The clusters of `account`, by key (the keys order pages).
    pub fn of_account(&self, account: &str) -> Result<Vec<(String, Cluster)>> {
        self.0.scan_json(CLUSTER, &format!("{account}/"))
    }
}

/// The task definitions: [`TaskDefinition`]s by account, family and revision, and
/// the last revision number of each family.
pub struct TaskDefinitions<'a>(pub &'a dyn Store);

impl TaskDefinitions<'_> {
    fn key(account: &str, family: &str, revision: u32) -> String {
        format!("{account}/{family}/{revision:010}")
    }

    /// One revision.
    pub fn get(
        &self,
        account: &str,
        family: &str,
        revision: u32,
    ) -> Result<Option<TaskDefinition>> {
        self.0
            .get_json(TASK_DEFINITION, &Self::key(account, family, revision))
    }

    /// Writes one revision (deregistration).
    pub fn put(&self, account: &str, td: &TaskDefinition) -> Result<()> {
        self.0.put_json(
            TASK_DEFINITION,
            &Self::key(account, &td.family, td.revision),
            td,
        )
    }

    /// The last revision number given in `family` (0: none yet). Without its
    /// counter (a new family, or a counter quarantined) it is the highest revision
    /// still stored or quarantined, so no revision number is ever given twice.
    pub fn last_revision(&self, account: &str, family: &str) -> Result<u32> {
        if let Some(n) = self
            .0
            .get_json::<u32>(FAMILY, &format!("{account}/{family}"))?
        {
            return Ok(n);
        }
        let prefix = format!("{account}/{family}/");
        let set_aside = quarantine::key_of(TASK_DEFINITION, &prefix);
        let keys = self
            .0
            .scan(TASK_DEFINITION, &prefix)?
            .into_iter()
            .map(|(k, _)| k)
            .chain(
                self.0
                    .scan(quarantine::TABLE, &set_aside)?
                    .into_iter()
                    .map(|(k, _)| k),
            );
        Ok(keys
            .filter_map(|k| k.rsplit('/').next()?.parse::<u32>().ok())
            .max()
            .unwrap_or(0))
    }

    /// The tags of one revision (none when it has none).
    pub fn tags(&self, account: &str, family: &str, revision: u32) -> Result<Vec<Tag>> {
        Ok(self
            .0
            .get_json(TASK_DEFINITION_TAGS, &Self::key(account, family, revision))?
            .unwrap_or_default())
    }

    /// Replaces the tags of one revision.
    pub fn put_tags(&self, account: &str, family: &str, revision: u32, tags: &[Tag]) -> Result<()> {
        self.0.put_json(
            TASK_DEFINITION_TAGS,
            &Self::key(account, family, revision),
            &tags,
        )
    }

    /// Stores a new revision with its tags and makes it the family's last, in one
    /// write.
    pub fn register(&self, account: &str, td: &TaskDefinition, tags: &[Tag]) -> Result<()> {
        self.0.write(vec![
            Write::put(
                TASK_DEFINITION_TAGS,
                Self::key(account, &td.family, td.revision),
                &tags,
            )?,
            Write::put(FAMILY, format!("{account}/{}", td.family), &td.revision)?,
            Write::put(
                TASK_DEFINITION,
                Self::key(account, &td.family, td.revision),
                td,
            )?,
        ])
    }

    /// The revisions of `family` (every family when None), by key: ascending
    /// family, then revision.
    pub fn listing(
        &self,
        account: &str,
        family: Option<&str>,
    ) -> Result<Vec<(String, TaskDefinition)>> {
        let prefix = match family {
            Some(f) => format!("{account}/{f}/"),
            None => format!("{account}/"),
        };
        self.0.scan_json(TASK_DEFINITION, &prefix)
    }

    /// The revisions of the families whose names start with `prefix`, in key order.
    pub fn with_family_prefix(&self, account: &str, prefix: &str) -> Result<Vec<TaskDefinition>> {
        Ok(self
            .0
            .scan_json::<TaskDefinition>(TASK_DEFINITION, &format!("{account}/{prefix}"))?
            .into_iter()
            .map(|(_, t)| t)
            .collect())
    }
}

/// The account settings: [`AccountSetting`]s by account, name and principal.
pub struct AccountSettings<'a>(pub &'a dyn Store);

impl AccountSettings<'_> {
    fn key(account: &str, name: &str, principal: &str) -> String {
        format!("{account}/{name}/{principal}")
    }

    /// The setting `name` of one principal, if it set one.
    pub fn get(
        &self,
        account: &str,
        name: &str,
        principal: &str,
    ) -> Result<Option<AccountSetting>> {
        self.0
            .get_json(ACCOUNT_SETTING, &Self::key(account, name, principal))
    }

    /// Writes one setting (under its name and principal).
    pub fn put(&self, account: &str, s: &AccountSetting) -> Result<()> {
        self.0.put_json(
            ACCOUNT_SETTING,
            &Self::key(account, &s.name, &s.principal_arn),
            s,
        )
    }

    /// Deletes one setting.
    pub fn delete(&self, account: &str, name: &str, principal: &str) -> Result<()> {
        self.0.write(vec![Write::Delete {
            table: ACCOUNT_SETTING,
            key: Self::key(account, name, principal),
        }])
    }

    /// Every setting of `account`, by key.
    pub fn of_account(&self, account: &str) -> Result<Vec<(String, AccountSetting)>> {
        self.0.scan_json(ACCOUNT_SETTING, &format!("{account}/"))
    }
}

/// The hosts: [`HostRecord`]s by host id.
pub struct Hosts<'a>(pub &'a dyn Store);

impl Hosts<'_> {
    /// One host.
    pub fn get(&self, id: &str) -> Result<Option<HostRecord>> {
        self.0.get_json(HOST, id)
    }

    /// Writes one host.
    pub fn put(&self, rec: &HostRecord) -> Result<()> {
        self.0.put_json(HOST, &rec.host_id, rec)
    }

    /// The write that stores one host (in a batch).
    pub fn put_write(rec: &HostRecord) -> Result<Write> {
        Write::put(HOST, rec.host_id.clone(), rec)
    }

    /// Every host of the cell.
    pub fn all(&self) -> Result<Vec<HostRecord>> {
        Ok(self
            .0
            .scan_json::<HostRecord>(HOST, "")?
            .into_iter()
            .map(|(_, h)| h)
            .collect())
    }
}

/// When clusters and services became INACTIVE, so that they can be pruned after the
/// retention (task definitions are kept, as ECS does).
pub struct InactiveSince<'a>(pub &'a dyn Store);

impl InactiveSince<'_> {
    /// Notes that `account`'s cluster `name` became INACTIVE at `at`.
    pub fn cluster(&self, account: &str, name: &str, at: f64) -> Result<()> {
        self.0
            .put_json(INACTIVE_SINCE, &format!("cluster/{account}/{name}"), &at)
    }

    /// Notes that the service `name` of `account`'s `cluster` became INACTIVE at `at`.
    pub fn service(&self, account: &str, cluster: &str, name: &str, at: f64) -> Result<()> {
        self.0.put_json(
            INACTIVE_SINCE,
            &format!("service/{account}/{cluster}/{name}"),
            &at,
        )
    }

    /// Deletes up to `max` clusters and services INACTIVE since before `cutoff`
    /// (seconds since the epoch), with their notes, in one batch; a note whose
    /// resource is ACTIVE again (created anew under its name) is dropped alone.
    /// Returns how many resources were deleted.
    pub fn prune(&self, cutoff: f64, max: usize) -> Result<usize> {
        let mut notes: Vec<(String, f64)> = self
            .0
            .scan_json::<f64>(INACTIVE_SINCE, "")?
            .into_iter()
            .filter(|(_, at)| *at < cutoff)
            .collect();
        notes.sort_by(|a, b| a.1.total_cmp(&b.1));
        notes.truncate(max);
        let mut writes = vec![];
        let mut pruned = 0;
        for (note, _) in notes {
            if let Some(key) = note.strip_prefix("cluster/") {
                let cl: Option<Cluster> = self.0.get_json(CLUSTER, key)?;
                if cl.is_some_and(|c| c.status == ClusterStatus::Inactive) {
                    writes.push(Write::Delete {
                        table: CLUSTER,
                        key: key.to_string(),
                    });
                    pruned += 1;
                }
            } else if let Some(key) = note.strip_prefix("service/") {
                let s: Option<Service> = self.0.get_json(SERVICE, key)?;
                if s.is_some_and(|s| s.status == ServiceStatus::Inactive) {
                    writes.push(Write::Delete {
                        table: SERVICE,
                        key: key.to_string(),
                    });
                    pruned += 1;
                }
            }
            writes.push(Write::Delete {
                table: INACTIVE_SINCE,
                key: note,
            });
        }
        if !writes.is_empty() {
            self.0.write(writes)?;
        }
        Ok(pruned)
    }
}

/// Reads every record of the tables a cell does not load into memory (task
/// definitions, family counters, clusters, services), so that those that do not
/// decode are quarantined when the cell is loaded; loading reads the tasks and
/// hosts itself. Cost: one scan of those tables. Returns how many records did not
/// decode.
pub fn sweep(store: &dyn Store) -> Result<u64> {
    let before = store.quarantine_stats().get().0;
    store.scan_json::<TaskDefinition>(TASK_DEFINITION, "")?;
    store.scan_json::<u32>(FAMILY, "")?;
    store.scan_json::<Vec<Tag>>(TASK_DEFINITION_TAGS, "")?;
    store.scan_json::<Cluster>(CLUSTER, "")?;
    store.scan_json::<Service>(SERVICE, "")?;
    store.scan_json::<AccountSetting>(ACCOUNT_SETTING, "")?;
    Ok(store.quarantine_stats().get().0.saturating_sub(before))
}

/// [`sweep`], and the tasks and hosts too: for a replica that could not move
/// records aside while it loaded (it did not lead yet). Returns how many records
/// did not decode.
pub fn sweep_all(store: &dyn Store) -> Result<u64> {
    let before = store.quarantine_stats().get().0;
    sweep(store)?;
    store.scan_json::<TaskRecord>(TASK, "")?;
    store.scan_json::<HostRecord>(HOST, "")?;
    Ok(store.quarantine_stats().get().0.saturating_sub(before))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_keys() {
        let k = |arn: &str| TaskKey::of_arn(arn).map(|k| k.to_string());
        assert_eq!(
            k("arn:aws:ecs:us-east-1:123:task/c1/abc").as_deref(),
            Some("123/c1/abc")
        );
        assert_eq!(k("arn:aws:ecs:us-east-1:123:task/abc"), None);
        assert_eq!(k("arn:aws:ecs:us-east-1:123:service/c/abc"), None);
        assert_eq!(k("nonsense"), None);
        assert_eq!(k("arn:aws:ecs:r:1:task/c/a/b"), None);
    }
}
