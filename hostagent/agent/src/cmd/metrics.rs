//! `--metrics-listen ADDR`: a TCP listener of its own serving `GET /metrics` (the
//! Prometheus text of [`hostagent::host::metrics`]) and nothing else.

use hostagent::host::agent::Agent;
use hostagent::host::metrics::{render, CONTENT_TYPE};
use hostagent::host::runtime::TaskRuntime;
use std::net::SocketAddr;
use std::sync::Arc;

/// Binds `addr` and serves the metrics of `agent` on a task of its own.
pub async fn serve<R: TaskRuntime>(addr: SocketAddr, agent: Arc<Agent<R>>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let stats = agent.stats();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
                    render(&stats),
                )
            }
        }),
    );
    tracing::info!(%addr, "metrics listening");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics listener: {e}");
        }
    });
    Ok(())
}
