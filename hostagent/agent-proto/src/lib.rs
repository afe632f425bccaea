//! Messages between the host agent and the control plane's agent communication service.
//!
//! # Protocol
//!
//! 1. **Registration** (once per host, plain HTTP):
//!    `POST /agent/v1/register` with a JSON [`RegisterRequest`] carrying the
//!    bootstrap token the operator configured on the control plane. The answer is
//!    a [`RegisterResponse`]: the host's identity (`hostId`) and a secret host
//!    credential. The agent keeps both; the bootstrap token is never used again.
//! 2. **Channel** (long-lived): a WebSocket at `GET /agent/v1/channel` with the
//!    header `Authorization: Bearer <hostId>:<hostCredential>`. Every frame is a
//!    JSON text frame: the agent sends [`AgentMessage`]s, the control plane sends
//!    [`ControlMessage`]s. The host is schedulable as soon as the upgrade
//!    succeeds (before the `101` answer is sent). On every (re)connect the control plane first re-sends
//!    a [`ControlMessage::LaunchTask`] for each task assigned to the host that has
//!    not stopped, and a [`ControlMessage::StopTask`] for each one whose desired
//!    status is `STOPPED`, so an agent that restarts converges without local state.
//! 3. **Heartbeats**: the agent sends [`AgentMessage::Heartbeat`] at least every
//!    `heartbeatIntervalSecs` (from the registration answer). A host silent for
//!    longer than the control plane's heartbeat timeout is declared lost and its
//!    tasks are stopped.
//!
//! The agent is not trusted: the control plane checks every message against the
//! host identity of the channel, and answers a message about a task that is not
//! assigned to that host with [`ControlMessage::Error`] (the message has no effect).
//!
//! All field names are camelCase on the wire, like the ECS API.

use serde::{Deserialize, Serialize};

/// Path of the registration endpoint.
pub const REGISTER_PATH: &str = "/agent/v1/register";
/// Path of the WebSocket channel endpoint.
pub const CHANNEL_PATH: &str = "/agent/v1/channel";

/// `POST /agent/v1/register` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// The bootstrap token configured on the control plane (`--bootstrap-token`).
    pub bootstrap_token: String,
    /// The host's name, for operators only.
    pub hostname: String,
    /// The availability zone the host is in, e.g. `us-east-1a`.
    pub availability_zone: String,
    /// CPU units the host offers to tasks (1 vCPU = 1024 units).
    pub cpu: u32,
    /// Memory in MiB the host offers to tasks.
    pub memory: u32,
    /// Optional cell to join; the control plane picks one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<u32>,
}

/// Answer to a successful registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    /// The host's identity, used in the channel's `Authorization` header.
    pub host_id: String,
    /// The host's secret; the control plane keeps only its hash.
    pub host_credential: String,
    /// The cell the host was placed in.
    pub cell: u32,
    /// How often the agent must send a heartbeat.
    pub heartbeat_interval_secs: u64,
}

/// Error body of a refused registration or channel upgrade (`{"message": ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Human-readable reason.
    pub message: String,
}

/// Builds the value of the channel's `Authorization` header.
pub fn bearer(host_id: &str, host_credential: &str) -> String {
    format!("Bearer {host_id}:{host_credential}")
}

/// A `KEY=VALUE` environment variable of a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Variable value.
    pub value: String,
}

/// A port the container listens on (awsvpc: host port = container port).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// The container port.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// One container to run, with the task definition and the run-time overrides merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec {
    /// Container name, unique in the task.
    pub name: String,
    /// Image reference (OCI Distribution registry or local layout).
    pub image: String,
    /// CPU units reserved for the container (0: a share of the task's).
    pub cpu: u32,
    /// Hard memory limit in MiB, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
    /// Soft memory reservation in MiB, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<u32>,
    /// Whether the task stops when this container exits.
    pub essential: bool,
    /// Entry point (overrides the image's), empty: the image's.
    #[serde(default)]
    pub entry_point: Vec<String>,
    /// Command (overrides the image's), empty: the image's.
    #[serde(default)]
    pub command: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub environment: Vec<EnvVar>,
    /// Ports the container listens on.
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// Stop timeout in seconds (SIGTERM, then SIGKILL after this long).
    pub stop_timeout_secs: u32,
}

/// The task's network attachment (`awsvpcConfiguration` of RunTask).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Subnets the ENI may be placed in.
    pub subnets: Vec<String>,
    /// Security groups of the ENI.
    pub security_groups: Vec<String>,
    /// Whether the ENI gets a public IP.
    pub assign_public_ip: bool,
}

/// Everything a host needs to start a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// The task's ARN, the key of every later message about it.
    pub task_arn: String,
    /// The account that owns the task.
    pub account_id: String,
    /// The task definition ARN (`family:revision`).
    pub task_definition_arn: String,
    /// Task CPU units (one of the Fargate sizes).
    pub cpu: u32,
    /// Task memory in MiB.
    pub memory: u32,
    /// The containers, in task definition order.
    pub containers: Vec<ContainerSpec>,
    /// The ENI configuration.
    pub network: NetworkSpec,
}

/// Lifecycle status of a task or container, as ECS shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Control plane: placed, host preparing the ENI.
    Provisioning,
    /// Host: pulling images, starting the microVM.
    Pending,
    /// All essential containers started.
    Running,
    /// Containers stopped, ENI being released.
    Deprovisioning,
    /// Terminal.
    Stopped,
}

impl Status {
    /// The ECS spelling (`RUNNING`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Provisioning => "PROVISIONING",
            Status::Pending => "PENDING",
            Status::Running => "RUNNING",
            Status::Deprovisioning => "DEPROVISIONING",
            Status::Stopped => "STOPPED",
        }
    }

    /// Parses the ECS spelling.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "PROVISIONING" => Status::Provisioning,
            "PENDING" => Status::Pending,
            "RUNNING" => Status::Running,
            "DEPROVISIONING" => Status::Deprovisioning,
            "STOPPED" => Status::Stopped,
            _ => return None,
        })
    }
}

/// State of one container of a task, as reported by the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    /// Container name (must be one of the task's).
    pub name: String,
    /// Container status (`PENDING`, `RUNNING` or `STOPPED`).
    pub last_status: Status,
    /// Exit code once stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it stopped, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Which output stream a container log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Agent -> control plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum AgentMessage {
    /// Liveness, with the ARNs of the tasks the host is running.
    #[serde(rename_all = "camelCase")]
    Heartbeat {
        /// Tasks the host currently runs (not yet STOPPED).
        running_tasks: Vec<String>,
    },
    /// A task (and its containers) changed state.
    #[serde(rename_all = "camelCase")]
    TaskStateChange {
        /// Which task.
        task_arn: String,
        /// The task's new status.
        last_status: Status,
        /// Container states (may be partial: only those that changed).
        #[serde(default)]
        containers: Vec<ContainerState>,
        /// For STOPPED: why (e.g. "Essential container in task exited").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stopped_reason: Option<String>,
        /// The private IPv4 address of the task's ENI, once known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        private_ipv4_address: Option<String>,
    },
}

/// Control plane -> agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ControlMessage {
    /// Start this task (idempotent: a host already running it ignores it).
    #[serde(rename_all = "camelCase")]
    LaunchTask {
        /// The task.
        task: TaskSpec,
    },
    /// Stop this task (SIGTERM, stop timeout, SIGKILL), then report STOPPED.
    #[serde(rename_all = "camelCase")]
    StopTask {
        /// Which task.
        task_arn: String,
        /// Why (shown as the task's stoppedReason).
        reason: String,
    },
    /// A message from the agent was refused; it had no effect.
    #[serde(rename_all = "camelCase")]
    Error {
        /// Why.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_camel_case_and_tagged() {
        let m = AgentMessage::TaskStateChange {
            task_arn: "arn:x".into(),
            last_status: Status::Running,
            containers: vec![ContainerState {
                name: "web".into(),
                last_status: Status::Stopped,
                exit_code: Some(3),
                reason: None,
            }],
            stopped_reason: None,
            private_ipv4_address: Some("10.0.0.5".into()),
        };
        let v: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(v["type"], "taskStateChange");
        assert_eq!(v["taskArn"], "arn:x");
        assert_eq!(v["lastStatus"], "RUNNING");
        assert_eq!(v["containers"][0]["exitCode"], 3);
        assert_eq!(v["privateIpv4Address"], "10.0.0.5");
        let back: AgentMessage = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
        let hb: AgentMessage =
            serde_json::from_str(r#"{"type":"heartbeat","runningTasks":["a"]}"#).unwrap();
        assert_eq!(
            hb,
            AgentMessage::Heartbeat {
                running_tasks: vec!["a".into()]
            }
        );
    }

    #[test]
    fn status_round_trips_and_orders() {
        for s in [
            Status::Provisioning,
            Status::Pending,
            Status::Running,
            Status::Deprovisioning,
            Status::Stopped,
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert!(Status::Pending < Status::Running && Status::Running < Status::Stopped);
        assert_eq!(Status::parse("nope"), None);
    }

    #[test]
    fn unknown_message_type_is_an_error() {
        assert!(serde_json::from_str::<ControlMessage>(r#"{"type":"reboot"}"#).is_err());
        assert_eq!(bearer("h", "c"), "Bearer h:c");
    }
}
