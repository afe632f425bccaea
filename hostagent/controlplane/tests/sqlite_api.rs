//! The API test suites (`tests/suites`) over the SQLite store.

mod common;
mod suites;
