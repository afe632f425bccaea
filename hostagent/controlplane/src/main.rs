//! `controlplane --listen ADDR --tls-cert PEM --tls-key PEM --data-dir DIR --account ID:KEY:SECRET`,
//! an operator command (`controlplane tokens|hosts|backup|restore ...`), or
//! `controlplane certs --out DIR --host NAME --ip ADDR` (a throwaway CA and
//! certificates, see `controlplane::certs`).

use clap::Parser;
use controlplane::config::{Args, Config};

fn main() {
    if let Some(code) = controlplane::operator::dispatch() {
        std::process::exit(code);
    }
    let mut argv = std::env::args_os();
    if std::env::args_os().nth(1).is_some_and(|a| a == "certs") {
        let name = argv.next();
        let rest = argv.skip(1);
        let args = controlplane::certs::CertsArgs::parse_from(name.into_iter().chain(rest));
        std::process::exit(controlplane::certs::main(args));
    }
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("controlplane: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(serve(args));
}

async fn serve(args: Args) {
    let level = args
        .log_level
        .parse::<tracing::Level>()
        .unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    let cfg = match Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("controlplane: {e}");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("controlplane: listen on {}: {e}", cfg.listen);
            std::process::exit(1);
        }
    };
    tracing::info!(
        "controlplane listening on {}",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        tracing::info!("shutting down");
    };
    if let Err(e) = controlplane::server::serve(cfg, listener, shutdown).await {
        eprintln!("controlplane: {e}");
        std::process::exit(1);
    }
}
