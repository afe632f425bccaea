//! The API test suites of the SQLite store, run again over a real etcd: the test
//! harness (`tests/common`) sees this binary's name start with `etcd` and starts
//! each control plane over its own `/usr/bin/etcd` (see `tests/common/etcd.rs`).
//! Without `/usr/bin/etcd` it says SKIP and runs them over SQLite.
// Each suite file declares `mod common;`: the harness is compiled once per suite.
#![allow(clippy::duplicate_mod)]

#[path = "agents.rs"]
mod agents;
#[path = "errors.rs"]
mod errors;
#[path = "frontend.rs"]
mod frontend;
#[path = "lifecycle.rs"]
mod lifecycle;
#[path = "logs.rs"]
mod logs;
#[path = "services.rs"]
mod services;
