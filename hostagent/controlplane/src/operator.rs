//! The operator commands: `controlplane tokens create|list|delete` and
//! `controlplane hosts list|revoke`. They open the cells' stores directly (the
//! SQLite files under `--data-dir`, or etcd), so whatever they write is seen by
//! every replica of the running control plane; there is no network endpoint for
//! them. Bootstrap tokens are stored as SHA-256 only: `tokens create` prints the
//! token once.

use crate::clock::now;
use crate::config::{Args, StoreConfig, StoreSettings};
use crate::host_tables::{BootstrapToken, BootstrapTokens, Revocation, RevokedHosts};
use crate::hosts::credentials;
use crate::store::etcd::EtcdStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use crate::tables::Hosts;
use clap::{Parser, Subcommand};
use std::time::Duration;

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The flags or config file do not make a store configuration.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A value out of range; the message says which.
    #[error("{0}")]
    Invalid(String),
    /// A backup or a restore failed.
    #[error("{0}")]
    Backup(#[from] crate::backup::BackupError),
    /// No such token or host.
    #[error("{0}")]
    NotFound(String),
}

/// `controlplane tokens|hosts ...`.
#[derive(Debug, Parser)]
#[command(
    name = "controlplane",
    about = "Operator commands of the control plane"
)]
pub enum Operator {
    /// Bootstrap tokens: what a host needs to register.
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// Registered hosts.
    #[command(subcommand)]
    Hosts(HostsCmd),
    /// Writes a consistent copy of the state (the SQLite files, or an etcd
    /// snapshot and the log stores) into one tar file, while the control plane runs.
    Backup {
        /// The backup file to write (must not exist).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Where the store is.
        #[command(flatten)]
        store: Args,
    },
    /// Writes a backup's files back into the data directory. Refuses while a
    /// control plane runs over it; an etcd snapshot is left in the data directory
    /// for `etcdutl snapshot restore`.
    Restore {
        /// The backup file to read.
        #[arg(long)]
        from: std::path::PathBuf,
        /// Where the store is.
        #[command(flatten)]
        store: Args,
    },
}

/// `controlplane tokens ...`.
#[derive(Debug, Subcommand)]
pub enum TokensCmd {
    /// Creates a bootstrap token and prints it on stdout (once: only its hash is
    /// stored). It registers at most --max-hosts hosts in one cell until it expires,
    /// each offering at most --max-cpu CPU units and --max-memory-mib MiB.
    Create {
        /// The cell its hosts join.
        #[arg(long)]
        cell: u32,
        /// Most hosts it registers.
        #[arg(long)]
        max_hosts: u32,
        /// How long it is valid: a number and a unit, s, m, h or d (e.g. 24h).
        #[arg(long, value_parser = parse_duration)]
        expires_in: Duration,
        /// Most CPU units (1024 = 1 vCPU) a host may offer.
        #[arg(long)]
        max_cpu: u32,
        /// Most memory (MiB) a host may offer.
        #[arg(long)]
        max_memory_mib: u32,
        /// Use this value (16 to 256 visible ASCII characters) instead of a random
        /// token (scripts and tests that must know it in advance).
        #[arg(long)]
        token: Option<String>,
        /// Where the store is.
        #[command(flatten)]
        store: Args,
    },
    /// Lists the tokens (one JSON object a line; never the token itself).
    List {
        /// Where the store is.
        #[command(flatten)]
        store: Args,
    },
    /// Deletes a token (by the id `tokens list` shows): it registers no more hosts.
    /// The hosts it registered stay (revoke them with `hosts revoke`).
    Delete {
        /// The token id.
        token_id: String,
        /// Where the store is.
        #[command(flatten)]
        store: Args,
    },
}

/// `controlplane hosts ...`.
#[derive(Debug, Subcommand)]
pub enum HostsCmd {
    /// Lists the registered hosts (one JSON object a line).
    List {
        /// Where the store is.
        #[command(flatten)]
        store: Args,
    },
    /// Revokes a host: its credential is refused from now on, and the cell's
    /// leader closes its channel, places nothing more there and stops its tasks
    /// (as for a lost host) within one sweep period.
    Revoke {
        /// The host id (`h-CELL-...`).
        host_id: String,
        /// Where the store is.
        #[command(flatten)]
        store: Args,
    },
}

/// Parses `90s`, `30m`, `24h`, `7d` (a plain number: seconds); at most a year.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and s, m, h or d (e.g. 24h)"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    let secs = n.saturating_mul(mult);
    if secs == 0 || secs > 366 * 86400 {
        return Err(format!("{s:?}: between 1 s and a year"));
    }
    Ok(Duration::from_secs(secs))
}

/// The stores of the cells, opened without campaigning for leadership.
struct Cells {
    stores: Vec<Box<dyn Store>>,
}

impl Cells {
    fn open(args: &Args) -> Result<Cells, OperatorError> {
        let s = StoreSettings::from_args(args)?;
        let mut stores: Vec<Box<dyn Store>> = vec![];
        match &s.store {
            StoreConfig::Sqlite => {
                std::fs::create_dir_all(&s.data_dir).map_err(StoreError::Io)?;
                for i in 0..s.cells {
                    let p = s.data_dir.join(format!("cell-{i}.db"));
                    stores.push(Box::new(SqliteStore::open(&p)?));
                }
            }
            StoreConfig::Etcd {
                endpoints,
                prefix,
                tls,
                ..
            } => {
                let client = crate::store::etcd::connect(endpoints, tls, Duration::from_secs(5))?;
                for i in 0..s.cells {
                    let st = EtcdStore::new(client.clone(), prefix, &i.to_string(), None);
                    stores.push(Box::new(st));
                }
            }
        }
        Ok(Cells { stores })
    }

    fn get(&self, cell: u32) -> Result<&dyn Store, OperatorError> {
        self.stores
            .get(cell as usize)
            .map(|s| s.as_ref())
            .ok_or_else(|| {
                OperatorError::Invalid(format!(
                    "no cell {cell}: the store has {} cells (--cells)",
                    self.stores.len()
                ))
            })
    }
}

fn valid_token_value(t: &str) -> bool {
    (16..=256).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic())
}

/// The options of `tokens create`.
pub struct NewToken {
    /// Cell.
    pub cell: u32,
    /// Most hosts.
    pub max_hosts: u32,
    /// Validity.
    pub expires_in: Duration,
    /// Most CPU units per host.
    pub max_cpu: u32,
    /// Most MiB per host.
    pub max_memory: u32,
    /// A chosen value, or None for a random one.
    pub token: Option<String>,
}

/// Creates a token; returns it and its record.
fn create_token(cells: &Cells, n: NewToken) -> Result<(String, BootstrapToken), OperatorError> {
    let store = cells.get(n.cell)?;
    if n.max_hosts == 0 || n.max_cpu == 0 || n.max_memory == 0 {
        return Err(OperatorError::Invalid(
            "--max-hosts, --max-cpu and --max-memory-mib must be positive".into(),
        ));
    }
    let token = match n.token {
        Some(t) if !valid_token_value(&t) => {
            return Err(OperatorError::Invalid(
                "--token must be 16 to 256 visible ASCII characters".into(),
            ))
        }
        Some(t) => t,
        None => format!("hbt-{}", credentials::new_secret()),
    };
    let hash = credentials::hash(&token);
    for s in &cells.stores {
        if BootstrapTokens(s.as_ref()).get(&hash)?.is_some() {
            return Err(OperatorError::Invalid("this token already exists".into()));
        }
    }
    let t = now();
    let rec = BootstrapToken {
        token_id: hash[..12].to_string(),
        cell: n.cell,
        max_hosts: n.max_hosts,
        hosts_registered: 0,
        max_cpu: n.max_cpu,
        max_memory: n.max_memory,
        created_at: t,
        expires_at: t + n.expires_in.as_secs_f64(),
    };
    if !BootstrapTokens(store).create(&hash, &rec)? {
        return Err(OperatorError::Invalid("this token already exists".into()));
    }
    Ok((token, rec))
}

fn revoke_host(cells: &Cells, host: &str) -> Result<bool, OperatorError> {
    let cell: u32 = host
        .strip_prefix("h-")
        .and_then(|r| r.split_once('-'))
        .and_then(|(n, _)| n.parse().ok())
        .ok_or_else(|| OperatorError::Invalid(format!("{host:?} is not a host id (h-CELL-...)")))?;
    let store = cells.get(cell)?;
    let rec = Hosts(store)
        .get(host)?
        .ok_or_else(|| OperatorError::NotFound(format!("no host {host}")))?;
    if rec.revoked_at.is_some() {
        return Ok(false);
    }
    RevokedHosts(store).put(host, &Revocation { revoked_at: now() })?;
    Ok(true)
}

fn run(op: Operator) -> Result<(), OperatorError> {
    match op {
        Operator::Backup { out, store } => {
            let s = StoreSettings::from_args(&store)?;
            let names = crate::backup::backup(&s, &out)?;
            eprintln!("backed up {} into {}", names.join(", "), out.display());
        }
        Operator::Restore { from, store } => {
            let s = StoreSettings::from_args(&store)?;
            let names = crate::backup::restore(&s, &from)?;
            eprintln!(
                "restored {} into {}",
                names.join(", "),
                s.data_dir.display()
            );
            if names.iter().any(|n| n == crate::backup::ETCD_SNAPSHOT) {
                eprintln!(
                    "the etcd snapshot is in {}: restore it with `etcdutl snapshot restore` into a new etcd data directory",
                    s.data_dir.join(crate::backup::ETCD_SNAPSHOT).display()
                );
            }
        }
        Operator::Tokens(TokensCmd::Create {
            cell,
            max_hosts,
            expires_in,
            max_cpu,
            max_memory_mib,
            token,
            store,
        }) => {
            let cells = Cells::open(&store)?;
            let (token, rec) = create_token(
                &cells,
                NewToken {
                    cell,
                    max_hosts,
                    expires_in,
                    max_cpu,
                    max_memory: max_memory_mib,
                    token,
                },
            )?;
            eprintln!(
                "bootstrap token {} for cell {cell}: up to {max_hosts} hosts of at most {max_cpu} CPU units and {max_memory_mib} MiB, for {} s",
                rec.token_id,
                expires_in.as_secs()
            );
            println!("{token}");
        }
        Operator::Tokens(TokensCmd::List { store }) => {
            let cells = Cells::open(&store)?;
            for s in &cells.stores {
                for (_, t) in BootstrapTokens(s.as_ref()).all()? {
                    println!("{}", serde_json::to_string(&t).unwrap_or_default());
                }
            }
        }
        Operator::Tokens(TokensCmd::Delete { token_id, store }) => {
            let cells = Cells::open(&store)?;
            let mut found = false;
            for s in &cells.stores {
                let toks = BootstrapTokens(s.as_ref());
                for (hash, t) in toks.all()? {
                    if t.token_id == token_id {
                        toks.delete(&hash)?;
                        found = true;
                    }
                }
            }
            if !found {
                return Err(OperatorError::NotFound(format!("no token {token_id}")));
            }
            eprintln!("bootstrap token {token_id} deleted");
        }
        Operator::Hosts(HostsCmd::List { store }) => {
            let cells = Cells::open(&store)?;
            for (i, s) in cells.stores.iter().enumerate() {
                for h in Hosts(s.as_ref()).all()? {
                    let v = serde_json::json!({
                        "hostId": h.host_id, "cell": i, "hostname": h.hostname,
                        "availabilityZone": h.availability_zone, "cpu": h.cpu,
                        "memory": h.memory, "status": h.status, "tokenId": h.token_id,
                        "registeredAt": h.registered_at,
                        "credentialExpiresAt": h.credential_expires_at,
                        "revokedAt": h.revoked_at,
                    });
                    println!("{v}");
                }
            }
        }
        Operator::Hosts(HostsCmd::Revoke { host_id, store }) => {
            let cells = Cells::open(&store)?;
            if revoke_host(&cells, &host_id)? {
                eprintln!("host {host_id} revoked: its credential is refused; the cell's leader closes its channel and stops its tasks");
            } else {
                eprintln!("host {host_id} was already revoked");
            }
        }
    }
    Ok(())
}

/// Runs the operator command of the command line if it names one (`tokens` or
/// `hosts`); returns its exit status, or None for the server's command line.
pub fn dispatch() -> Option<i32> {
    let first = std::env::args().nth(1)?;
    if !["tokens", "hosts", "backup", "restore"].contains(&first.as_str()) {
        return None;
    }
    let op = match Operator::try_parse() {
        Ok(op) => op,
        Err(e) => {
            let _ = e.print();
            return Some(if e.use_stderr() { 2 } else { 0 });
        }
    };
    Some(match run(op) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("controlplane: {e}");
            1
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172800)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        for bad in ["", "h", "0s", "5w", "-1h", "400d", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
