//! Configuration: command-line flags, optionally completed by a JSON config file.

use crate::store::etcd::EtcdTls;
use crate::throttle::ThrottleConfig;
use clap::Parser;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the flags and the config file do not make a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("{}: {err}", .path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        err: std::io::Error,
    },
    /// The config file is not the JSON expected.
    #[error("{}: {err}", .path.display())]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        err: serde_json::Error,
    },
    /// A value out of range or malformed; the message says which and what is expected.
    #[error("{0}")]
    Invalid(String),
}

/// Log events kept per cell unless configured.
pub const DEFAULT_LOG_RETENTION_EVENTS: u64 = 1_000_000;

/// The audit log's file name under the data directory unless configured.
pub const AUDIT_LOG_FILE: &str = "audit.log";

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "controlplane",
    about = "ECS-compatible control plane: API, cells, placement, agent channel",
    after_help = "Operator commands (they open the same store, give them the same --data-dir, \
--config and store flags):\n  \
controlplane tokens create --cell N --max-hosts N --expires-in 24h --max-cpu UNITS --max-memory-mib MIB\n  \
controlplane tokens list | controlplane tokens delete TOKEN_ID\n  \
controlplane hosts list | controlplane hosts revoke HOST_ID\n  \
controlplane backup --out FILE (while running) | controlplane restore --from FILE (stopped)\n\
See `controlplane tokens --help`, `controlplane hosts --help`, `controlplane backup --help`.\n\
controlplane certs --out DIR --host NAME --ip ADDR makes a throwaway local CA, a server \
certificate and an etcd client certificate (see `controlplane certs --help`)."
)]
pub struct Args {
    /// Address to serve the ECS API and the agent channel on (HTTPS and wss://).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Certificate chain (PEM, leaf first) of the HTTPS listener.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP and ws:// instead of HTTPS: development only, refused unless
    /// --listen is a loopback address.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub dev_plain_http: bool,
    /// Directory of the state (SQLite files: router.db, cell-N.db).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// An API account: ACCOUNT_ID:ACCESS_KEY_ID:SECRET (repeatable).
    #[arg(long = "account")]
    pub accounts: Vec<String>,
    /// JSON config file (accounts, cells, throttles, timings).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Region of ARNs and of the SigV4 credential scope.
    #[arg(long)]
    pub region: Option<String>,
    /// Number of cells.
    #[arg(long)]
    pub cells: Option<u32>,
    /// How long a host credential is valid; agents rotate theirs before it
    /// expires (default 24 h).
    #[arg(long)]
    pub host_credential_ttl_ms: Option<u64>,
    /// How long the previous credential stays valid after a rotation (default
    /// 5 min, at most the TTL).
    #[arg(long)]
    pub host_credential_overlap_ms: Option<u64>,
    /// A host silent for this long is declared lost.
    #[arg(long)]
    pub heartbeat_timeout_ms: Option<u64>,
    /// Heartbeat interval told to agents.
    #[arg(long)]
    pub heartbeat_interval_ms: Option<u64>,
    /// Period of the service scheduler.
    #[arg(long)]
    pub scheduler_interval_ms: Option<u64>,
    /// Most log events each cell's log store keeps (the oldest go first).
    #[arg(long)]
    pub log_retention_events: Option<u64>,
    /// How long a STOPPED task stays visible (DescribeTasks, ListTasks) before it
    /// is pruned from the store, in milliseconds (default 3600000: one hour, as ECS).
    #[arg(long)]
    pub stopped_task_retention_ms: Option<u64>,
    /// How long an INACTIVE (deleted) service or cluster stays visible before it is
    /// pruned, in milliseconds (default 3600000: one hour, as ECS). INACTIVE task
    /// definitions are kept.
    #[arg(long)]
    pub inactive_retention_ms: Option<u64>,
    /// Most STOPPED tasks each cell prunes per pass of its background loop
    /// (default 500); a larger backlog is pruned over several passes.
    #[arg(long)]
    pub prune_batch: Option<u64>,
    /// State store: `sqlite` (default: files under --data-dir) or `etcd`
    /// (several replicas over one etcd cluster).
    #[arg(long)]
    pub store: Option<StoreKind>,
    /// An etcd client URL, `https://HOST:PORT` (repeatable; implies --store etcd).
    #[arg(long = "etcd-endpoint")]
    pub etcd_endpoints: Vec<String>,
    /// CA certificate (PEM) that etcd's server certificate is checked against.
    #[arg(long)]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) this control plane presents to etcd.
    #[arg(long)]
    pub etcd_cert: Option<PathBuf>,
    /// Private key (PEM) of --etcd-cert.
    #[arg(long)]
    pub etcd_key: Option<PathBuf>,
    /// Prefix of every etcd key of this control plane.
    #[arg(long)]
    pub etcd_prefix: Option<String>,
    /// TTL of the leadership lease (whole seconds are used; etcd's minimum is
    /// about 2 s): a dead leader is replaced within it.
    #[arg(long)]
    pub lease_ttl_ms: Option<u64>,
    /// The address other replicas name as this replica's, when it leads a cell
    /// (default: --listen).
    #[arg(long)]
    pub advertise: Option<String>,
    /// The audit log: one JSON line per mutating API call, accepted or refused
    /// (time, account, accessKeyId, operation, requestId, sourceAddress, outcome).
    /// Appended to; created with mode 0600. Default: DATA_DIR/audit.log.
    #[arg(long, value_name = "PATH")]
    pub audit_log: Option<PathBuf>,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Account quotas.
    #[command(flatten)]
    pub quotas: crate::quotas::QuotaArgs,
}

/// Which state store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Embedded SQLite files under the data directory (one replica).
    Sqlite,
    /// An etcd cluster shared by several replicas.
    Etcd,
}

/// `"store"` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreFileConfig {
    /// `sqlite` or `etcd`.
    pub kind: Option<StoreKind>,
    /// etcd client URLs.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Key prefix.
    pub prefix: Option<String>,
    /// Leadership lease TTL.
    pub lease_ttl_ms: Option<u64>,
    /// Address named as this replica's when it leads.
    pub advertise: Option<String>,
}

/// The effective store settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// SQLite under the data directory.
    Sqlite,
    /// etcd.
    Etcd {
        /// Client URLs.
        endpoints: Vec<String>,
        /// Key prefix (no trailing `/`).
        prefix: String,
        /// Leadership lease TTL.
        lease_ttl: Duration,
        /// Address named as this replica's when it leads.
        advertise: String,
        /// The CA and client certificate of the TLS connections to etcd.
        tls: EtcdTls,
    },
}

/// How the API listener serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerConfig {
    /// HTTPS (and wss:// for agents) with this certificate chain and key.
    Https {
        /// Certificate chain (PEM).
        cert: PathBuf,
        /// Private key (PEM).
        key: PathBuf,
    },
    /// Plain HTTP, on a loopback address only (`--dev-plain-http`).
    PlainLoopback,
}

impl ListenerConfig {
    fn build(args: &Args) -> Result<ListenerConfig, ConfigError> {
        if args.dev_plain_http {
            if !args.listen.ip().is_loopback() {
                return Err(ConfigError::Invalid(format!(
                    "--dev-plain-http serves plain HTTP on loopback addresses only, not on {}",
                    args.listen
                )));
            }
            return Ok(ListenerConfig::PlainLoopback);
        }
        match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Ok(ListenerConfig::Https {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => Err(ConfigError::Invalid(
                "the API is served over HTTPS: give --tls-cert and --tls-key \
                 (`controlplane certs` makes a throwaway pair), or --dev-plain-http \
                 on a loopback --listen address"
                    .into(),
            )),
        }
    }
}

/// Default etcd key prefix.
pub const DEFAULT_ETCD_PREFIX: &str = "/controlplane";

impl StoreConfig {
    fn build(args: &Args, file: StoreFileConfig) -> Result<StoreConfig, ConfigError> {
        let endpoints = if args.etcd_endpoints.is_empty() {
            file.endpoints
        } else {
            args.etcd_endpoints.clone()
        };
        let kind = args.store.or(file.kind).unwrap_or(if endpoints.is_empty() {
            StoreKind::Sqlite
        } else {
            StoreKind::Etcd
        });
        if kind == StoreKind::Sqlite {
            return Ok(StoreConfig::Sqlite);
        }
        if endpoints.is_empty() {
            return Err(ConfigError::Invalid(
                "the etcd store needs --etcd-endpoint https://HOST:PORT (or \"endpoints\")".into(),
            ));
        }
        for e in &endpoints {
            if !e.starts_with("https://") || e.len() < 11 {
                return Err(ConfigError::Invalid(format!(
                    "etcd endpoint {e:?}: expected https://HOST:PORT (etcd is reached over TLS)"
                )));
            }
        }
        let (Some(ca), Some(cert), Some(key)) = (&args.etcd_ca, &args.etcd_cert, &args.etcd_key)
        else {
            return Err(ConfigError::Invalid(
                "the etcd store needs --etcd-ca, --etcd-cert and --etcd-key (TLS with a \
                 client certificate)"
                    .into(),
            ));
        };
        let tls = EtcdTls {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        };
        let prefix = args
            .etcd_prefix
            .clone()
            .or(file.prefix)
            .unwrap_or_else(|| DEFAULT_ETCD_PREFIX.into());
        let prefix = prefix.trim_end_matches('/').to_string();
        if prefix.is_empty() || !prefix.starts_with('/') {
            return Err(ConfigError::Invalid(format!(
                "etcd prefix {prefix:?}: must start with / and not be /"
            )));
        }
        let ttl_ms = args.lease_ttl_ms.or(file.lease_ttl_ms).unwrap_or(10_000);
        if !(1_000..=600_000).contains(&ttl_ms) {
            return Err(ConfigError::Invalid(
                "lease TTL must be between 1000 and 600000 ms".into(),
            ));
        }
        Ok(StoreConfig::Etcd {
            endpoints,
            prefix,
            lease_ttl: Duration::from_millis(ttl_ms),
            advertise: args
                .advertise
                .clone()
                .or(file.advertise)
                .unwrap_or_else(|| args.listen.to_string()),
            tls,
        })
    }
}

/// An account in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountEntry {
    /// 12-digit account id.
    pub account_id: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

/// The config file (every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    /// The tenant accounts and their access keys.
    #[serde(default)]
    pub accounts: Vec<AccountEntry>,
    /// The AWS region named in ARNs and signatures.
    pub region: Option<String>,
    /// Number of cells.
    pub cells: Option<u32>,
    /// Host credential TTL.
    pub host_credential_ttl_ms: Option<u64>,
    /// Overlap of the previous host credential after a rotation.
    pub host_credential_overlap_ms: Option<u64>,
    /// Heartbeat timeout.
    pub heartbeat_timeout_ms: Option<u64>,
    /// Heartbeat interval.
    pub heartbeat_interval_ms: Option<u64>,
    /// Scheduler period.
    pub scheduler_interval_ms: Option<u64>,
    /// Per-account, per-operation API rate limits.
    pub throttle: Option<ThrottleConfig>,
    /// Log store retention (events per cell).
    pub log_retention_events: Option<u64>,
    /// How long a STOPPED task stays visible.
    pub stopped_task_retention_ms: Option<u64>,
    /// How long an INACTIVE service or cluster stays visible.
    pub inactive_retention_ms: Option<u64>,
    /// Most STOPPED tasks pruned per pass.
    pub prune_batch: Option<u64>,
    /// State store.
    pub store: Option<StoreFileConfig>,
    /// Audit log file.
    pub audit_log: Option<PathBuf>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// HTTPS, or plain HTTP on loopback.
    pub listener: ListenerConfig,
    /// State directory.
    pub data_dir: PathBuf,
    /// access key -> (account, secret).
    pub accounts: HashMap<String, (String, String)>,
    /// The AWS region named in ARNs and signatures.
    pub region: String,
    /// How many cells (independent stores and host pools) to run.
    pub cells: u32,
    /// Host credential lifetimes.
    pub credential_policy: CredentialPolicy,
    /// Heartbeat timeout.
    pub heartbeat_timeout: Duration,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Scheduler period.
    pub scheduler_interval: Duration,
    /// Per-account, per-operation API rate limits.
    pub throttle: ThrottleConfig,
    /// Most log events each cell's log store keeps.
    pub log_retention_events: u64,
    /// How long finished resources stay visible, prune batches.
    pub retention: crate::retention::Retention,
    /// State store.
    pub store: StoreConfig,
    /// The audit log file.
    pub audit_log: PathBuf,
    /// Account quotas.
    pub quotas: crate::quotas::Quotas,
}

/// How long host credentials live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialPolicy {
    /// A credential expires this long after it was issued.
    pub ttl: Duration,
    /// The previous credential stays valid this long after a rotation.
    pub overlap: Duration,
}

/// Default host credential TTL.
pub const DEFAULT_CREDENTIAL_TTL_MS: u64 = 24 * 3600 * 1000;
/// Default overlap of the previous credential after a rotation.
pub const DEFAULT_CREDENTIAL_OVERLAP_MS: u64 = 5 * 60 * 1000;

impl CredentialPolicy {
    fn build(ttl_ms: Option<u64>, overlap_ms: Option<u64>) -> Result<Self, ConfigError> {
        let ttl = ttl_ms.unwrap_or(DEFAULT_CREDENTIAL_TTL_MS);
        if !(1_000..=365 * 24 * 3600 * 1000).contains(&ttl) {
            return Err(ConfigError::Invalid(
                "host credential TTL must be between 1000 ms and one year".into(),
            ));
        }
        let overlap = overlap_ms.unwrap_or(DEFAULT_CREDENTIAL_OVERLAP_MS.min(ttl / 2));
        if overlap > ttl {
            return Err(ConfigError::Invalid(
                "host credential overlap must not exceed its TTL".into(),
            ));
        }
        Ok(CredentialPolicy {
            ttl: Duration::from_millis(ttl),
            overlap: Duration::from_millis(overlap),
        })
    }
}

/// What the operator commands (`controlplane tokens|hosts ...`) need of the flags
/// and config file: where the store is and how many cells it has.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// State directory (SQLite files).
    pub data_dir: PathBuf,
    /// Number of cells.
    pub cells: u32,
    /// State store.
    pub store: StoreConfig,
}

impl FileConfig {
    /// The config file at `path` (none: every setting from flags or defaults).
    fn read(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
        let Some(p) = path else {
            return Ok(FileConfig::default());
        };
        let s = std::fs::read_to_string(p).map_err(|err| ConfigError::Read {
            path: p.to_path_buf(),
            err,
        })?;
        serde_json::from_str(&s).map_err(|err| ConfigError::Parse {
            path: p.to_path_buf(),
            err,
        })
    }
}

impl StoreSettings {
    /// The store settings of `args` and its config file (accounts are not needed).
    pub fn from_args(args: &Args) -> Result<StoreSettings, ConfigError> {
        let mut file = FileConfig::read(args.config.as_deref())?;
        let store = StoreConfig::build(args, file.store.take().unwrap_or_default())?;
        Ok(StoreSettings {
            data_dir: args.data_dir.clone(),
            cells: args.cells.or(file.cells).unwrap_or(1).clamp(1, 64),
            store,
        })
    }
}

fn add_account(
    map: &mut HashMap<String, (String, String)>,
    a: AccountEntry,
) -> Result<(), ConfigError> {
    if a.account_id.len() != 12 || !a.account_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::Invalid(format!(
            "account id {:?} must be 12 digits",
            a.account_id
        )));
    }
    if a.access_key_id.is_empty() || a.secret_access_key.is_empty() || a.access_key_id.contains('/')
    {
        return Err(ConfigError::Invalid(format!(
            "account {}: empty or invalid access key / secret",
            a.account_id
        )));
    }
    if map
        .insert(a.access_key_id.clone(), (a.account_id, a.secret_access_key))
        .is_some()
    {
        return Err(ConfigError::Invalid(format!(
            "access key {} given twice",
            a.access_key_id
        )));
    }
    Ok(())
}

impl Config {
    /// Builds the configuration from flags and the optional file.
    pub fn from_args(args: &Args) -> Result<Config, ConfigError> {
        let mut file = FileConfig::read(args.config.as_deref())?;
        let listener = ListenerConfig::build(args)?;
        let store = StoreConfig::build(args, file.store.take().unwrap_or_default())?;
        let mut accounts = HashMap::new();
        for a in file.accounts {
            add_account(&mut accounts, a)?;
        }
        for s in &args.accounts {
            let mut it = s.splitn(3, ':');
            let (Some(id), Some(key), Some(secret)) = (it.next(), it.next(), it.next()) else {
                return Err(ConfigError::Invalid(format!(
                    "--account {s:?}: expected ACCOUNT_ID:ACCESS_KEY_ID:SECRET"
                )));
            };
            add_account(
                &mut accounts,
                AccountEntry {
                    account_id: id.into(),
                    access_key_id: key.into(),
                    secret_access_key: secret.into(),
                },
            )?;
        }
        if accounts.is_empty() {
            return Err(ConfigError::Invalid(
                "no accounts: give --account ACCOUNT_ID:ACCESS_KEY_ID:SECRET or a config file"
                    .into(),
            ));
        }
        let cells = args.cells.or(file.cells).unwrap_or(1);
        if !(1..=64).contains(&cells) {
            return Err(ConfigError::Invalid(
                "cells must be between 1 and 64".into(),
            ));
        }
        let ms = |a: Option<u64>, f: Option<u64>, d: u64| {
            Duration::from_millis(a.or(f).unwrap_or(d).max(1))
        };
        Ok(Config {
            listen: args.listen,
            listener,
            data_dir: args.data_dir.clone(),
            accounts,
            region: args
                .region
                .clone()
                .or(file.region)
                .unwrap_or_else(|| "us-east-1".into()),
            cells,
            credential_policy: CredentialPolicy::build(
                args.host_credential_ttl_ms.or(file.host_credential_ttl_ms),
                args.host_credential_overlap_ms
                    .or(file.host_credential_overlap_ms),
            )?,
            heartbeat_timeout: ms(args.heartbeat_timeout_ms, file.heartbeat_timeout_ms, 30_000),
            heartbeat_interval: ms(
                args.heartbeat_interval_ms,
                file.heartbeat_interval_ms,
                10_000,
            ),
            scheduler_interval: ms(
                args.scheduler_interval_ms,
                file.scheduler_interval_ms,
                1_000,
            ),
            throttle: file.throttle.unwrap_or_default(),
            log_retention_events: args
                .log_retention_events
                .or(file.log_retention_events)
                .unwrap_or(DEFAULT_LOG_RETENTION_EVENTS)
                .max(1),
            retention: crate::retention::Retention {
                stopped_tasks: ms(
                    args.stopped_task_retention_ms,
                    file.stopped_task_retention_ms,
                    crate::retention::DEFAULT_STOPPED_TASK_RETENTION_MS,
                ),
                inactive: ms(
                    args.inactive_retention_ms,
                    file.inactive_retention_ms,
                    crate::retention::DEFAULT_INACTIVE_RETENTION_MS,
                ),
                batch: args
                    .prune_batch
                    .or(file.prune_batch)
                    .unwrap_or(crate::retention::DEFAULT_PRUNE_BATCH)
                    .clamp(1, 100_000) as usize,
            },
            store,
            audit_log: args
                .audit_log
                .clone()
                .or(file.audit_log)
                .unwrap_or_else(|| args.data_dir.join(AUDIT_LOG_FILE)),
            quotas: crate::quotas::Quotas::from(&args.quotas),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &[&str], file: Option<&str>) -> Result<Config, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cp.json");
        let mut argv = vec!["controlplane", "--data-dir", "/tmp/x"];
        argv.extend(["--account", "111122223333:AKID:secret"]);
        if !extra
            .iter()
            .any(|a| a.starts_with("--tls") || *a == "--dev-plain-http")
        {
            argv.extend([
                "--tls-cert",
                "/tls/server.pem",
                "--tls-key",
                "/tls/server-key.pem",
            ]);
        }
        let ps = p.to_string_lossy().into_owned();
        if let Some(f) = file {
            std::fs::write(&p, f).unwrap();
            argv.extend(["--config", &ps]);
        }
        argv.extend(extra);
        if extra.iter().any(|a| a.starts_with("--etcd-endpoint")) || file.is_some() {
            argv.extend(["--etcd-ca", "/tls/ca.pem", "--etcd-cert", "/tls/client.pem"]);
            argv.extend(["--etcd-key", "/tls/client-key.pem"]);
        }
        Ok(Config::from_args(&Args::try_parse_from(argv)?)?)
    }

    #[test]
    fn host_credential_lifetimes() {
        let c = cfg(&[], None).unwrap();
        assert_eq!(c.credential_policy.ttl, Duration::from_secs(86400));
        assert_eq!(c.credential_policy.overlap, Duration::from_secs(300));
        let c = cfg(&["--host-credential-ttl-ms", "4000"], None).unwrap();
        assert_eq!(c.credential_policy.overlap, Duration::from_millis(2000));
        let f = r#"{"hostCredentialTtlMs": 60000, "hostCredentialOverlapMs": 1000}"#;
        let c = cfg(&[], Some(f)).unwrap();
        assert_eq!(c.credential_policy.ttl, Duration::from_secs(60));
        assert_eq!(c.credential_policy.overlap, Duration::from_secs(1));
        let e = cfg(&["--host-credential-ttl-ms", "10"], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("TTL"), "{e}");
        let e = cfg(
            &[
                "--host-credential-ttl-ms",
                "2000",
                "--host-credential-overlap-ms",
                "3000",
            ],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("overlap"), "{e}");
        // The static token of older versions is gone: a clear refusal.
        assert!(cfg(&["--bootstrap-token", "x"], None).is_err());
        assert!(cfg(&[], Some(r#"{"bootstrapToken": "x"}"#)).is_err());
    }

    #[test]
    fn quotas_default_to_ecs_and_take_flags() {
        assert_eq!(
            cfg(&[], None).unwrap().quotas,
            crate::quotas::Quotas::default()
        );
        let q = cfg(
            &[
                "--quota-fargate-vcpus",
                "2",
                "--quota-clusters-per-account",
                "3",
            ],
            None,
        )
        .unwrap()
        .quotas;
        assert_eq!((q.fargate_vcpus, q.clusters_per_account), (2, 3));
        assert_eq!(q.services_per_cluster, 5_000);
    }

    #[test]
    fn sqlite_is_the_default() {
        assert_eq!(cfg(&[], None).unwrap().store, StoreConfig::Sqlite);
    }

    #[test]
    fn audit_log_under_the_data_dir_unless_given() {
        assert_eq!(
            cfg(&[], None).unwrap().audit_log,
            PathBuf::from("/tmp/x/audit.log")
        );
        let c = cfg(&[], Some(r#"{"auditLog": "/var/log/cp/a.log"}"#)).unwrap();
        assert_eq!(c.audit_log, PathBuf::from("/var/log/cp/a.log"));
        let c = cfg(&["--audit-log", "/l/b.log"], Some(r#"{"auditLog": "/a"}"#)).unwrap();
        assert_eq!(c.audit_log, PathBuf::from("/l/b.log"));
    }

    #[test]
    fn etcd_from_flags_or_file() {
        let c = cfg(&["--etcd-endpoint", "https://127.0.0.1:2379"], None).unwrap();
        assert_eq!(
            c.store,
            StoreConfig::Etcd {
                endpoints: vec!["https://127.0.0.1:2379".into()],
                prefix: DEFAULT_ETCD_PREFIX.into(),
                lease_ttl: Duration::from_secs(10),
                advertise: "127.0.0.1:8080".into(),
                tls: EtcdTls {
                    ca: "/tls/ca.pem".into(),
                    cert: "/tls/client.pem".into(),
                    key: "/tls/client-key.pem".into(),
                },
            }
        );
        let f = r#"{"store": {"kind": "etcd", "endpoints": ["https://10.0.0.1:2379", "https://10.0.0.2:2379"],
                    "prefix": "/prod/cp/", "leaseTtlMs": 3000, "advertise": "10.0.0.9:8080"}}"#;
        let c = cfg(&[], Some(f)).unwrap();
        let StoreConfig::Etcd {
            endpoints,
            prefix,
            lease_ttl,
            advertise,
            ..
        } = c.store
        else {
            panic!("not etcd");
        };
        assert_eq!(endpoints.len(), 2);
        assert_eq!(prefix, "/prod/cp");
        assert_eq!(lease_ttl, Duration::from_secs(3));
        assert_eq!(advertise, "10.0.0.9:8080");
        // A flag wins over the file.
        let c = cfg(&["--store", "sqlite"], Some(f)).unwrap();
        assert_eq!(c.store, StoreConfig::Sqlite);
    }

    #[test]
    fn bad_store_settings_are_refused() {
        let e = cfg(&["--store", "etcd"], None).unwrap_err().to_string();
        assert!(e.contains("--etcd-endpoint"), "{e}");
        let e = cfg(&["--etcd-endpoint", "127.0.0.1:2379"], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("https://"), "{e}");
        let e = cfg(
            &["--etcd-endpoint", "https://a:1", "--etcd-prefix", "x"],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("prefix"), "{e}");
        let e = cfg(
            &["--etcd-endpoint", "https://a:1", "--lease-ttl-ms", "10"],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("TTL"), "{e}");
        let e = cfg(&[], Some(r#"{"store": {"kind": "zookeeper"}}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("zookeeper"), "{e}");
        assert!(cfg(&["--store", "zookeeper"], None).is_err());
        // Plain etcd, or TLS without a client certificate: refused.
        let e = cfg(&["--etcd-endpoint", "http://127.0.0.1:2379"], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("https://"), "{e}");
        let argv = [
            "controlplane",
            "--data-dir",
            "/tmp/x",
            "--account",
            "111122223333:AKID:secret",
            "--dev-plain-http",
            "--etcd-endpoint",
            "https://127.0.0.1:2379",
            "--etcd-ca",
            "/tls/ca.pem",
        ];
        let e = Config::from_args(&Args::try_parse_from(argv).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--etcd-cert"), "{e}");
    }

    #[test]
    fn https_unless_plain_on_loopback() {
        let c = cfg(&[], None).unwrap();
        assert_eq!(
            c.listener,
            ListenerConfig::Https {
                cert: "/tls/server.pem".into(),
                key: "/tls/server-key.pem".into()
            }
        );
        let c = cfg(&["--dev-plain-http"], None).unwrap();
        assert_eq!(c.listener, ListenerConfig::PlainLoopback);
        let c = cfg(&["--dev-plain-http", "--listen", "[::1]:9000"], None).unwrap();
        assert_eq!(c.listener, ListenerConfig::PlainLoopback);
        // Neither flag: refused, naming both ways out.
        let argv = [
            "controlplane",
            "--data-dir",
            "/tmp/x",
            "--account",
            "111122223333:AKID:secret",
        ];
        let e = Config::from_args(&Args::try_parse_from(argv).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--tls-cert") && e.contains("--dev-plain-http"),
            "{e}"
        );
        // Plain HTTP on an address other hosts reach: refused.
        for addr in ["0.0.0.0:8080", "10.0.0.9:8080", "[::]:8080"] {
            let e = cfg(&["--dev-plain-http", "--listen", addr], None)
                .unwrap_err()
                .to_string();
            assert!(e.contains("loopback"), "{addr}: {e}");
        }
        // A certificate without its key, or both ways at once: refused by the parser.
        assert!(cfg(&["--tls-cert", "/a.pem"], None).is_err());
        assert!(cfg(
            &[
                "--tls-cert",
                "/a.pem",
                "--tls-key",
                "/b.pem",
                "--dev-plain-http"
            ],
            None
        )
        .is_err());
    }
}
