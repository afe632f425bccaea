//! netd binary: loads the config, reconciles, serves the API until SIGTERM/SIGINT.
//!
//! No modules of its own: everything but the flags is the library (module map in `lib.rs`);
//! this file uses [`netd::Config`], [`netd::daemon::Netd`], [`netd::api`] and [`netd::metrics`].

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

use std::sync::Arc;

use netd::metrics::{self, Metrics};
use netd::{api, daemon::Netd, Config};

/// Host network daemon: per-task ENIs, IPAM, security groups (nftables), NAT.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Config file (TOML).
    #[arg(long, default_value = "/etc/netd/netd.toml")]
    config: PathBuf,
    /// Override the API socket path of the config file.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Also serve `GET /metrics` (Prometheus text) on this TCP address, e.g.
    /// 127.0.0.1:9101 (loopback recommended: it has no authentication). Off by default;
    /// the API socket serves `/metrics` too.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Validate the config file and exit.
    #[arg(long)]
    check_config: bool,
}

/// Why the daemon could not start or stopped serving; logged once before exiting 1.
#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error(transparent)]
    Config(netd::error::Error),
    #[error("start: {0}")]
    Start(#[source] netd::error::Error),
    #[error("{}: {source}", dir.display())]
    SocketDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bind {}: {source}", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("metrics listener {addr}: {source}")]
    MetricsBind {
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Setting the socket's mode, installing the signal handlers, or serving.
    #[error(transparent)]
    Io(#[from] io::Error),
}

async fn run(args: Args) -> Result<(), MainError> {
    let mut cfg = Config::load(&args.config).map_err(MainError::Config)?;
    if let Some(s) = args.socket {
        cfg.socket = s;
    }
    if args.check_config {
        println!("config ok: {} subnet(s)", cfg.subnets.len());
        return Ok(());
    }
    let socket = cfg.socket.clone();
    let d = Netd::start(cfg).await.map_err(MainError::Start)?;
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|source| MainError::SocketDir {
            dir: dir.into(),
            source,
        })?;
    }
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket).map_err(|source| MainError::Bind {
        path: socket.clone(),
        source,
    })?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o660))?;
    let m = Arc::new(Metrics::new());
    if let Some(addr) = args.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| MainError::MetricsBind { addr, source })?;
        info!(%addr, "metrics listening");
        let app = metrics::router(d.clone(), m.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, app).await {
                error!("metrics listener: {e}");
            }
        });
    }
    info!(socket = %socket.display(), "netd listening");
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        info!("shutting down; ENIs and state stay for the running tasks");
    };
    axum::serve(listener, api::router_with(d, m))
        .with_graceful_shutdown(shutdown)
        .await?;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Args::parse()).await {
        error!("{e}");
        std::process::exit(1);
    }
}
