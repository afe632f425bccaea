//! Configuration: command-line flags, optionally completed by a JSON config file.

use crate::frontend::throttle::ThrottleConfig;
use clap::Parser;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Log events kept per cell unless configured.
pub const DEFAULT_LOG_RETENTION_EVENTS: u64 = 1_000_000;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "controlplane",
    about = "ECS-compatible control plane: API, cells, placement, agent channel"
)]
pub struct Args {
    /// Address to serve the ECS API and the agent channel on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
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
    /// Token hosts present to register (no token: registration disabled).
    #[arg(long)]
    pub bootstrap_token: Option<String>,
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
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    pub log_level: String,
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
    /// Accounts.
    #[serde(default)]
    pub accounts: Vec<AccountEntry>,
    /// Region.
    pub region: Option<String>,
    /// Number of cells.
    pub cells: Option<u32>,
    /// Bootstrap token.
    pub bootstrap_token: Option<String>,
    /// Heartbeat timeout.
    pub heartbeat_timeout_ms: Option<u64>,
    /// Heartbeat interval.
    pub heartbeat_interval_ms: Option<u64>,
    /// Scheduler period.
    pub scheduler_interval_ms: Option<u64>,
    /// Throttles.
    pub throttle: Option<ThrottleConfig>,
    /// Log store retention (events per cell).
    pub log_retention_events: Option<u64>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// State directory.
    pub data_dir: PathBuf,
    /// access key -> (account, secret).
    pub accounts: HashMap<String, (String, String)>,
    /// Region.
    pub region: String,
    /// Cells.
    pub cells: u32,
    /// Bootstrap token.
    pub bootstrap_token: Option<String>,
    /// Heartbeat timeout.
    pub heartbeat_timeout: Duration,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Scheduler period.
    pub scheduler_interval: Duration,
    /// Throttles.
    pub throttle: ThrottleConfig,
    /// Most log events each cell's log store keeps.
    pub log_retention_events: u64,
}

fn add_account(map: &mut HashMap<String, (String, String)>, a: AccountEntry) -> Result<(), String> {
    if a.account_id.len() != 12 || !a.account_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("account id {:?} must be 12 digits", a.account_id));
    }
    if a.access_key_id.is_empty() || a.secret_access_key.is_empty() || a.access_key_id.contains('/')
    {
        return Err(format!(
            "account {}: empty or invalid access key / secret",
            a.account_id
        ));
    }
    if map
        .insert(a.access_key_id.clone(), (a.account_id, a.secret_access_key))
        .is_some()
    {
        return Err(format!("access key {} given twice", a.access_key_id));
    }
    Ok(())
}

impl Config {
    /// Builds the configuration from flags and the optional file.
    pub fn from_args(args: &Args) -> Result<Config, String> {
        let file: FileConfig = match &args.config {
            None => FileConfig::default(),
            Some(p) => {
                let s = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                serde_json::from_str(&s).map_err(|e| format!("{}: {e}", p.display()))?
            }
        };
        let mut accounts = HashMap::new();
        for a in file.accounts {
            add_account(&mut accounts, a)?;
        }
        for s in &args.accounts {
            let mut it = s.splitn(3, ':');
            let (Some(id), Some(key), Some(secret)) = (it.next(), it.next(), it.next()) else {
                return Err(format!(
                    "--account {s:?}: expected ACCOUNT_ID:ACCESS_KEY_ID:SECRET"
                ));
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
            return Err(
                "no accounts: give --account ACCOUNT_ID:ACCESS_KEY_ID:SECRET or a config file"
                    .into(),
            );
        }
        let cells = args.cells.or(file.cells).unwrap_or(1);
        if !(1..=64).contains(&cells) {
            return Err("cells must be between 1 and 64".into());
        }
        let ms = |a: Option<u64>, f: Option<u64>, d: u64| {
            Duration::from_millis(a.or(f).unwrap_or(d).max(1))
        };
        Ok(Config {
            listen: args.listen,
            data_dir: args.data_dir.clone(),
            accounts,
            region: args
                .region
                .clone()
                .or(file.region)
                .unwrap_or_else(|| "us-east-1".into()),
            cells,
            bootstrap_token: args.bootstrap_token.clone().or(file.bootstrap_token),
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
        })
    }
}
