//! etcd store: several controlplane replicas share one etcd cluster.
//!
//! Keys are `<prefix>/<cell>/<table>/<key>` (the router uses `router` as its cell).
//! A batch is one etcd transaction, so it is atomic, and durable when etcd answers
//! (committed by a quorum, in each member's fsynced WAL). Scans are ranges read in
//! pages of [`PAGE`] keys at the revision of the first page (one consistent view).
//!
//! A cell's writes are fenced: every transaction compares the `create_revision` of
//! the cell's leadership key with the revision at which this replica created it
//! (see [`Fence`] and `crate::leader`). A replica that is not, or no longer, the
//! leader gets [`StoreError::NotLeader`] and writes nothing, so a deposed leader
//! that has not noticed yet cannot clobber its successor's state.
//!
//! The [`Store`] trait is synchronous and is called from tokio workers as well as
//! from plain threads. Every etcd call runs on one dedicated runtime ([`runtime`])
//! and the caller waits on a std channel; the runtime's own threads never call the
//! sync API, so this cannot deadlock.

use super::quarantine::{self, QuarantineStats};
use super::{Store, StoreError, Write};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn,
    TxnOp,
};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Keys per page of a scan.
pub const PAGE: i64 = 500;

/// The runtime every etcd call of this process runs on (one worker thread).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd-client")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the etcd client runtime: {e}"))
    })
}

/// Runs `f` on the etcd runtime and waits for it (from any thread but the
/// runtime's own).
pub fn block_on<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv()
        .unwrap_or_else(|_| panic!("etcd client runtime dropped a call"))
}

fn etcd_err(e: etcd_client::Error) -> StoreError {
    StoreError::Etcd(e.to_string())
}

/// The TLS files of the connections to etcd: etcd's server certificate is checked
/// against `ca`, and this control plane presents `cert` (etcd runs with
/// `--client-cert-auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA certificate (PEM).
    pub ca: PathBuf,
    /// Client certificate (PEM).
    pub cert: PathBuf,
    /// Client key (PEM).
    pub key: PathBuf,
}

impl EtcdTls {
    fn options(&self) -> Result<TlsOptions, StoreError> {
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|e| {
                StoreError::Io(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", p.display()),
                ))
            })
        };
        Ok(TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca)?))
            .identity(Identity::from_pem(read(&self.cert)?, read(&self.key)?)))
    }
}

/// Connects over TLS to `endpoints` (`https://host:port`); each call times out after
/// `timeout`.
pub fn connect(
    endpoints: &[String],
    tls: &EtcdTls,
    timeout: Duration,
) -> Result<Client, StoreError> {
    let endpoints = endpoints.to_vec();
    let tls = tls.options()?;
    block_on(async move {
        let opts = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(5), timeout)
            .with_tls(tls);
        Client::connect(endpoints, Some(opts)).await
    })
    .map_err(etcd_err)
}

/// The leadership a cell's writes must hold.
///
/// `held` is what the campaign won; `active` is what writes compare, set from
/// `held` only once the cell has reloaded its state after winning (see
/// `Cell::lock`), so no write is based on what the replica knew before.
#[derive(Debug)]
pub struct Fence {
    /// Full etcd key of the cell's leadership.
    pub key: String,
    held: AtomicI64,
    active: AtomicI64,
    leader: Mutex<Option<String>>,
}

impl Fence {
    /// A fence on `key`, not held.
    pub fn new(key: String) -> Fence {
        Fence {
            key,
            held: AtomicI64::new(0),
            active: AtomicI64::new(0),
            leader: Mutex::new(None),
        }
    }
    /// The `create_revision` of the leadership key this replica holds (0: none).
    pub fn revision(&self) -> i64 {
        self.held.load(Ordering::SeqCst)
    }
    /// Records that this replica holds the key created at `rev`, and writes may
    /// use it at once (0: lost it).
    pub fn set_revision(&self, rev: i64) {
        self.held.store(rev, Ordering::SeqCst);
        self.active.store(rev, Ordering::SeqCst);
    }
    /// Records that the campaign won the key created at `rev`; writes use it
    /// after [`Fence::activate`].
    pub fn set_won(&self, rev: i64) {
        self.active.store(0, Ordering::SeqCst);
        self.held.store(rev, Ordering::SeqCst);
    }
    /// Lets writes use the leadership won.
    pub fn activate(&self) {
        self.active
            .store(self.held.load(Ordering::SeqCst), Ordering::SeqCst);
    }
    /// What writes compare (0: they are refused).
    pub fn active_revision(&self) -> i64 {
        self.active.load(Ordering::SeqCst)
    }
    /// What the current leader advertises, as last seen.
    pub fn leader(&self) -> Option<String> {
        crate::sync::lock(&self.leader).clone()
    }
    /// Records what the current leader advertises.
    pub fn set_leader(&self, l: Option<String>) {
        *crate::sync::lock(&self.leader) = l;
    }
    fn not_leader(&self) -> StoreError {
        StoreError::NotLeader {
            leader: self.leader(),
        }
    }
}

/// One cell's (or the router's) part of an etcd keyspace.
pub struct EtcdStore {
    client: Client,
    root: String,
    fence: Option<Arc<Fence>>,
    stats: QuarantineStats,
}

/// The end of the range of keys starting with `prefix` (etcd's `range_end`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

impl EtcdStore {
    /// The store of `name` (a cell number or `router`) under `prefix`. With a
    /// fence, every write requires the fenced leadership.
    pub fn new(client: Client, prefix: &str, name: &str, fence: Option<Arc<Fence>>) -> EtcdStore {
        EtcdStore {
            client,
            root: format!("{}/{name}/", prefix.trim_end_matches('/')),
            fence,
            stats: QuarantineStats::default(),
        }
    }

    fn key(&self, table: &str, key: &str) -> String {
        format!("{}{table}/{key}", self.root)
    }
}

impl Store for EtcdStore {
    fn get(&self, table: &str, key: &str) -> Result<Option<String>, StoreError> {
        let mut c = self.client.clone();
        let k = self.key(table, key);
        let resp = block_on(async move { c.get(k, None).await }).map_err(etcd_err)?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => Ok(Some(quarantine::text_of(kv.value()))),
        }
    }

    fn scan(&self, table: &str, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let strip = self.key(table, "").len();
        let start = self.key(table, prefix).into_bytes();
        let end = prefix_end(&start);
        let c = self.client.clone();
        let pages = block_on(async move {
            let mut c = c;
            let mut out = vec![];
            let mut from = start;
            let mut rev = 0;
            loop {
                let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
                if rev > 0 {
                    opts = opts.with_revision(rev);
                }
                let resp = c.get(from.clone(), Some(opts)).await?;
                if rev == 0 {
                    rev = resp.header().map(|h| h.revision()).unwrap_or(0);
                }
                let more = resp.more();
                let mut resp = resp;
                let kvs = resp.take_kvs();
                if let Some(last) = kvs.last() {
                    from = last.key().to_vec();
                    from.push(0);
                }
                out.extend(kvs.into_iter().map(|kv| kv.into_key_value()));
                if !more {
                    return Ok::<_, etcd_client::Error>(out);
                }
            }
        })
        .map_err(etcd_err)?;
        // A value that is not UTF-8 is read marked (and then quarantined); a key
        // that is not (no version of this control plane writes one) is skipped.
        Ok(pages
            .into_iter()
            .filter_map(|(k, v)| match String::from_utf8(k) {
                Ok(k) if k.len() >= strip => {
                    Some((k[strip..].to_string(), quarantine::text_of(&v)))
                }
                _ => {
                    tracing::warn!(table, "skipped an etcd key that is not UTF-8");
                    None
                }
            })
            .collect())
    }

    fn write(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        // etcd refuses two operations on one key in a transaction: keep the last.
        let mut last: HashMap<String, usize> = HashMap::new();
        let ops: Vec<(String, Option<String>)> = batch
            .into_iter()
            .map(|w| match w {
                Write::Put { table, key, value } => (self.key(table, &key), Some(value)),
                Write::Delete { table, key } => (self.key(table, &key), None),
            })
            .collect();
        for (i, (k, _)) in ops.iter().enumerate() {
            last.insert(k.clone(), i);
        }
        let ops: Vec<TxnOp> = ops
            .into_iter()
            .enumerate()
            .filter(|(i, (k, _))| last.get(k) == Some(i))
            .map(|(_, (k, v))| match v {
                Some(v) => TxnOp::put(k, v, None),
                None => TxnOp::delete(k, None),
            })
            .collect();
        if ops.is_empty() {
            return Ok(());
        }
        let mut txn = Txn::new();
        if let Some(f) = &self.fence {
            let rev = f.active_revision();
            if rev == 0 {
                return Err(f.not_leader());
            }
            txn = txn.when(vec![Compare::create_revision(
                f.key.clone(),
                CompareOp::Equal,
                rev,
            )]);
        }
        let txn = txn.and_then(ops);
        let mut c = self.client.clone();
        let resp = block_on(async move { c.txn(txn).await }).map_err(etcd_err)?;
        if resp.succeeded() {
            Ok(())
        } else {
            let f = self.fence.as_ref();
            // The leadership moved on: this replica must stop acting as leader.
            if let Some(f) = f {
                f.set_revision(0);
            }
            Err(f
                .map(|f| f.not_leader())
                .unwrap_or(StoreError::NotLeader { leader: None }))
        }
    }

    fn insert_new(
        &self,
        table: &'static str,
        key: &str,
        value: String,
    ) -> Result<String, StoreError> {
        let k = self.key(table, key);
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                k.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(k.clone(), value.clone(), None)])
            .or_else(vec![TxnOp::get(k, None)]);
        let mut c = self.client.clone();
        let resp = block_on(async move { c.txn(txn).await }).map_err(etcd_err)?;
        if resp.succeeded() {
            return Ok(value);
        }
        for r in resp.op_responses() {
            if let etcd_client::TxnOpResponse::Get(g) = r {
                if let Some(kv) = g.kvs().first() {
                    return kv
                        .value_str()
                        .map(str::to_string)
                        .map_err(|e| StoreError::Etcd(format!("{table}/{key}: {e}")));
                }
            }
        }
        Err(StoreError::Etcd(format!(
            "{table}/{key}: neither inserted nor found"
        )))
    }

    fn quarantine(
        &self,
        table: &str,
        key: &str,
        raw: &str,
        record: String,
    ) -> Result<bool, StoreError> {
        let k = self.key(table, key);
        let mut when = vec![];
        if let Some(f) = &self.fence {
            let rev = f.active_revision();
            if rev == 0 {
                return Err(f.not_leader());
            }
            when.push(Compare::create_revision(
                f.key.clone(),
                CompareOp::Equal,
                rev,
            ));
        }
        if raw.starts_with(quarantine::NOT_UTF8) {
            when.push(Compare::create_revision(k.clone(), CompareOp::Greater, 0));
        } else {
            when.push(Compare::value(k.clone(), CompareOp::Equal, raw));
        }
        let txn = Txn::new().when(when).and_then(vec![
            TxnOp::put(
                self.key(quarantine::TABLE, &quarantine::key_of(table, key)),
                record,
                None,
            ),
            TxnOp::delete(k, None),
        ]);
        let mut c = self.client.clone();
        let resp = block_on(async move { c.txn(txn).await }).map_err(etcd_err)?;
        Ok(resp.succeeded())
    }

    fn quarantine_stats(&self) -> &QuarantineStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::etcd_process::{available, EtcdProcess};
    use crate::store::StoreExt;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn conforms_over_real_etcd() {
        if !available() {
            eprintln!("SKIP: /usr/bin/etcd missing (Debian package etcd-server)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let etcd = EtcdProcess::start(&dir.path().join("etcd")).unwrap();
        let client = connect(
            std::slice::from_ref(&etcd.endpoint),
            &etcd.client_tls,
            Duration::from_secs(5),
        )
        .unwrap();
        let s = EtcdStore::new(client.clone(), "/cp", "0", None);
        crate::store::conformance(&s);
        // Another cell (and the router) under the same prefix see none of it.
        let other = EtcdStore::new(client.clone(), "/cp", "1", None);
        assert_eq!(other.scan("t", "").unwrap(), vec![]);
        assert_eq!(other.get("t", "acct/a").unwrap(), None);
        // A value that is not UTF-8 is quarantined, not an error of the scan.
        let mut c = client.clone();
        block_on(async move { c.put("/cp/1/t/x", b"{\"a\":\"\xff".to_vec(), None).await }).unwrap();
        other.put_json("t", "y", &1).unwrap();
        assert_eq!(
            other.scan_json::<i32>("t", "").unwrap(),
            vec![("y".to_string(), 1)]
        );
        assert_eq!(other.quarantine_stats().get(), (1, 1));
        let q = other
            .get_json::<crate::store::quarantine::QuarantinedRecord>("quarantine", "t/x")
            .unwrap()
            .unwrap();
        assert!(!q.utf8);
    }
}
