//! The messages exchanged after the handshake.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::spec::TaskSpec;
use crate::{PROTOCOL_MAGIC, PROTOCOL_VERSION};

/// A message that can be received from the channel.
pub trait Message: Serialize + DeserializeOwned {
    /// The JSON `type` tags this message knows (empty: the message has no tag). A payload
    /// whose tag is none of these is [`crate::ProtoError::UnknownType`], not merely
    /// malformed.
    const TYPES: &'static [&'static str];
}

/// Which end of the channel a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Host,
    Guest,
}

impl Role {
    pub fn peer(self) -> Role {
        match self {
            Role::Host => Role::Guest,
            Role::Guest => Role::Host,
        }
    }
}

/// First frame sent by each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: String,
    pub version: u32,
    pub role: Role,
    /// Free-form name and version of the sending program, for logs.
    pub agent: String,
}

impl Hello {
    pub fn new(role: Role, agent: &str) -> Self {
        Self {
            magic: PROTOCOL_MAGIC.to_string(),
            version: PROTOCOL_VERSION,
            role,
            agent: agent.to_string(),
        }
    }
}

impl Message for Hello {
    const TYPES: &'static [&'static str] = &[];
}

/// Host -> guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum HostMessage {
    /// The task to run; sent once, right after the handshake.
    RunTask { task: Box<TaskSpec> },
    /// Stop the task: SIGTERM every container, wait the stop timeout (120 s when `spot`),
    /// SIGKILL, report, power off.
    #[serde(rename_all = "camelCase")]
    StopTask {
        reason: String,
        #[serde(default)]
        spot: bool,
    },
}

impl Message for HostMessage {
    const TYPES: &'static [&'static str] = &["runTask", "stopTask"];
}

/// Lifecycle of one container, as ECS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ContainerStatus {
    /// Waiting for its dependsOn conditions.
    Pending,
    /// Its process is running.
    Running,
    /// Exited, killed, or never started (then `reason` says why).
    Stopped,
}

/// Health of a container that has a healthCheck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HealthStatus {
    Unknown,
    Healthy,
    Unhealthy,
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One container's final state, reported in [`GuestMessage::TaskStopped`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub name: String,
    pub status: ContainerStatus,
    /// Exit code: the process's exit status, or 128 + signal number when killed.
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
}

/// Guest -> host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum GuestMessage {
    /// The spec was valid and the guest is setting the task up.
    #[serde(rename_all = "camelCase")]
    TaskAccepted { task_arn: String },
    /// A container changed state.
    #[serde(rename_all = "camelCase")]
    ContainerStateChange {
        container: String,
        status: ContainerStatus,
        exit_code: Option<i32>,
        reason: Option<String>,
        /// Guest-side PID of the container's main process (RUNNING only).
        pid: Option<i32>,
        timestamp_ms: u64,
    },
    /// A container's health changed.
    #[serde(rename_all = "camelCase")]
    HealthChange {
        container: String,
        status: HealthStatus,
        output: String,
        timestamp_ms: u64,
    },
    /// One line of a container's output (without the newline; lossily UTF-8 decoded; lines
    /// longer than 16 KiB are split).
    #[serde(rename_all = "camelCase")]
    Log {
        container: String,
        stream: LogStream,
        timestamp_ms: u64,
        line: String,
    },
    /// Something went wrong. `fatal` errors are followed by [`GuestMessage::TaskStopped`] and
    /// a power-off.
    Error { message: String, fatal: bool },
    /// Last message before the guest powers off.
    #[serde(rename_all = "camelCase")]
    TaskStopped {
        reason: String,
        containers: Vec<ContainerState>,
    },
}

impl Message for GuestMessage {
    const TYPES: &'static [&'static str] = &[
        "taskAccepted",
        "containerStateChange",
        "healthChange",
        "log",
        "error",
        "taskStopped",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag<T: Serialize>(m: &T) -> String {
        serde_json::to_value(m).unwrap()["type"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Every variant's tag is in `TYPES`, and `TYPES` names nothing else.
    #[test]
    fn types_lists_match_the_variants() {
        let guest = [
            GuestMessage::TaskAccepted {
                task_arn: "t".into(),
            },
            GuestMessage::ContainerStateChange {
                container: "c".into(),
                status: ContainerStatus::Running,
                exit_code: None,
                reason: None,
                pid: None,
                timestamp_ms: 0,
            },
            GuestMessage::HealthChange {
                container: "c".into(),
                status: HealthStatus::Healthy,
                output: String::new(),
                timestamp_ms: 0,
            },
            GuestMessage::Log {
                container: "c".into(),
                stream: LogStream::Stdout,
                timestamp_ms: 0,
                line: String::new(),
            },
            GuestMessage::Error {
                message: String::new(),
                fatal: false,
            },
            GuestMessage::TaskStopped {
                reason: String::new(),
                containers: vec![],
            },
        ];
        // Fails to compile when a variant is added, so the list above (and TYPES) grow too.
        for m in &guest {
            match m {
                GuestMessage::TaskAccepted { .. }
                | GuestMessage::ContainerStateChange { .. }
                | GuestMessage::HealthChange { .. }
                | GuestMessage::Log { .. }
                | GuestMessage::Error { .. }
                | GuestMessage::TaskStopped { .. } => {}
            }
        }
        let tags: Vec<String> = guest.iter().map(tag).collect();
        assert_eq!(tags, GuestMessage::TYPES);
        let host = [
            HostMessage::RunTask {
                task: Box::default(),
            },
            HostMessage::StopTask {
                reason: String::new(),
                spot: false,
            },
        ];
        for m in &host {
            match m {
                HostMessage::RunTask { .. } | HostMessage::StopTask { .. } => {}
            }
        }
        let tags: Vec<String> = host.iter().map(tag).collect();
        assert_eq!(tags, HostMessage::TYPES);
    }
}
