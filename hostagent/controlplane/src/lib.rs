//! The thin bundled control plane: ECS-compatible API, cells, placement, agent channel.
//!
//! Module map, from the front end down; a module uses only modules listed below it.
//! - [`operator`]: the operator commands (`tokens create|list|delete`,
//!   `hosts list|revoke`), over the store directly.
//! - [`server`]: wiring: the HTTP routes, the per-cell background loops, `serve`.
//! - [`scrape`]: `GET /metrics` and the middleware timing every API call.
//! - [`tls`]: TLS of the API listener (rustls): configurations from PEM files, the
//!   listener that hands over only completed handshakes.
//! - [`hosts`]: the hosts: registration, the WebSocket channel of each agent, heartbeats.
//! - [`frontend`]: one ECS or Logs call over HTTP: body bounds (size, depth), SigV4,
//!   throttle, decode, dispatch.
//! - [`metrics`]: Prometheus metrics: call latency and errors per operation,
//!   placement latency, cell/host/log/audit counters at each scrape (`GET /metrics`).
//! - [`app`]: the shared state every handler and loop takes (`App`).
//! - [`backup`]: `backup --out FILE` / `restore --from FILE`: SQLite online backups
//!   or an etcd snapshot in one tar file; the data directory's lock.
//! - [`audit`]: the audit log: a JSON line per mutating call, one writer thread.
//! - [`api`]: the ECS operations, one module per resource, and their operation table.
//! - [`scheduler`]: the service scheduler (desired counts, deployments, draining hosts).
//! - [`validate`]: ECS's input rules (types aside): task definitions, containers,
//!   request parameters (network, overrides, tags, load balancers), names and ids.
//! - [`logs`]: container logs: the log store, agents' batches into it, the Logs API.
//! - [`tagging`]: the tags a new task gets (given, propagated, managed).
//! - [`task_identity`]: what a task gets at launch from the identity and secret stores
//!   (role credentials, secret values), behind a trait.
//! - [`lifecycle`]: a task's life: launch, stop requests, host reports, STOPPED.
//! - [`cells`]: cells (store, placement, hosts, agents) and the account router.
//! - [`leader`]: the etcd leadership campaign of a replica, one role per cell.
//! - [`config`]: flags and config file.
//! - [`retention`]: how long STOPPED tasks stay visible, prune batches, service
//!   events kept.
//! - [`quotas`]: account quotas (ECS's defaults, flags) and their checks.
//! - [`certs`]: `controlplane certs`: a throwaway local CA and certificates (rcgen).
//! - [`error`]: the ECS/Logs wire error (`ApiError`), and the one `From<DomainError>`.
//! - [`domain`]: the domain error (`DomainError`) of lifecycle, scheduler and validation.
//! - [`capacity`]: the built-in capacity providers and strategies (base, weight).
//! - [`placement`]: which host gets a task (best fit, AZ spread).
//! - [`tables`]: one typed accessor per table of a cell's store (keys, records).
//! - [`host_tables`]: the host-identity tables: bootstrap tokens, revoked hosts.
//! - [`store`]: the key-value store of a cell: SQLite or etcd.
//! - [`model`]: the ECS resources as stored and shown, every field typed, and their
//!   status enums.
//! - [`throttle`]: token buckets per account and operation.
//! - [`ctx`]: who is calling (`Ctx`: account, region) and new ids.
//! - [`clock`]: the wall clock in ECS, Logs and SigV4 units.
//! - [`sync`]: poison-tolerant locks.
//!
//! Test support, behind the `test-utils` feature: `testagent` (a simulated host on the
//! agent channel) and `client` (a SigV4-signing ECS client).
//!
//! See README.md beside this crate for the design.

pub mod api;
pub mod app;
pub mod audit;
pub mod backup;
pub mod capacity;
pub mod cells;
pub mod certs;
#[cfg(any(test, feature = "test-utils"))]
pub mod client;
pub mod clock;
pub mod config;
pub mod ctx;
pub mod domain;
pub mod error;
pub mod frontend;
pub mod host_tables;
pub mod hosts;
pub mod leader;
pub mod lifecycle;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod operator;
pub mod placement;
pub mod quotas;
pub mod retention;
pub mod scheduler;
pub mod scrape;
pub mod server;
pub mod store;
pub mod sync;
pub mod tables;
pub mod tagging;
pub mod task_identity;
#[cfg(any(test, feature = "test-utils"))]
pub mod testagent;
pub mod throttle;
pub mod tls;
pub mod validate;
