//! The jailer's error type: every failure names the step and the path it was working on.

use std::fmt;

/// A step of the jailer, named in every error it causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Validate,
    Stdio,
    CloseFds,
    JailDir,
    CopyExec,
    Devices,
    Cgroup,
    Fork,
    PidFile,
    Rlimit,
    Netns,
    MountNs,
    PivotRoot,
    PidNs,
    Daemonize,
    Privileges,
    Exec,
    Wait,
    Cleanup,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Step::Validate => "validate",
            Step::Stdio => "stdio",
            Step::CloseFds => "close inherited fds",
            Step::JailDir => "create jail dir",
            Step::CopyExec => "copy exec file",
            Step::Devices => "create device nodes",
            Step::Cgroup => "cgroup",
            Step::Fork => "fork",
            Step::PidFile => "write pid file",
            Step::Rlimit => "resource limit",
            Step::Netns => "join netns",
            Step::MountNs => "mount namespace",
            Step::PivotRoot => "pivot_root",
            Step::PidNs => "pid namespace",
            Step::Daemonize => "daemonize",
            Step::Privileges => "drop privileges",
            Step::Exec => "exec",
            Step::Wait => "wait for vmm",
            Step::Cleanup => "cleanup",
        };
        f.write_str(name)
    }
}

/// Errors of the jailer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A step failed on a path (`path` may be an argument such as `--id`).
    #[error("{step}: {path}: {detail}")]
    Step {
        step: Step,
        path: String,
        detail: String,
    },
    /// A step failed in the jailed child; the message is the child's own error.
    #[error("{0}")]
    InJail(String),
}

impl Error {
    /// A failed step with a free-form reason.
    pub fn new(step: Step, path: impl fmt::Display, detail: impl fmt::Display) -> Self {
        Error::Step {
            step,
            path: path.to_string(),
            detail: detail.to_string(),
        }
    }

    /// The step that failed (None for errors reported by the jailed child).
    pub fn step(&self) -> Option<Step> {
        match self {
            Error::Step { step, .. } => Some(*step),
            Error::InJail(_) => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Attaches a step and a path to any displayable error.
pub trait Context<T> {
    fn at(self, step: Step, path: impl fmt::Display) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn at(self, step: Step, path: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::new(step, path, e))
    }
}
