//! The API test suites, one module per area. Two test binaries run all of them:
//! `sqlite_api` over SQLite files and `etcd_api` over a real etcd (the harness,
//! `tests/common`, picks the store from the binary's name).

mod agents;
mod bounds;
mod capacity;
mod errors;
mod frontend;
mod lifecycle;
mod logs;
mod logs_api;
mod quarantine;
mod quotas;
mod retention;
mod services;
mod settings;
mod tagging;
mod task_definitions;
