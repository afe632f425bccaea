//! The API test suites (`tests/suites`) again, over a real etcd: the test harness
//! (`tests/common`) sees this binary's name start with `etcd` and starts each
//! control plane over its own `/usr/bin/etcd` (see `tests/common/etcd.rs`).
//! Without `/usr/bin/etcd` it says SKIP and runs them over SQLite.

mod common;
mod suites;
