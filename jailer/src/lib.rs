//! The jailer: starts one vmm process confined (own root via pivot_root, mount/pid/net
//! namespaces, cgroups, rlimits, an unprivileged uid/gid, no capabilities, no_new_privs).
//!
//! The binary is `jailer`; other components use [`cgroups::task_limits`] to turn a task's
//! CPU units and memory into `--cgroup` arguments.

pub mod cgroups;
pub mod cleanup;
pub mod cli;
pub mod error;
pub mod fds;
pub mod jail;
pub mod mountns;
pub mod privileges;
pub mod rlimits;
pub mod run;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
pub mod undo;
pub mod validate;

pub use cgroups::{task_limits, CgroupVersion};
pub use error::{Error, Step};
