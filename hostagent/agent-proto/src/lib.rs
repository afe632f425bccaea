//! Messages between the host agent and the control plane's agent communication service.
//!
//! # Protocol
//!
//! 1. **Registration** (once per host, plain HTTP):
//!    `POST /agent/v1/register` with a JSON [`RegisterRequest`] carrying the
//!    bootstrap token the operator gave the host. The answer is
//!    a [`RegisterResponse`]: the host's identity (`hostId`) and a secret host
//!    credential. The agent keeps both; the bootstrap token is not used again
//!    unless the credential expires. The bootstrap token is one the operator
//!    created for one cell (`controlplane tokens create`), with a maximum number of
//!    hosts, an expiry and a maximum capacity per host; a registration it does not
//!    allow is refused with an [`ErrorBody`] saying why.
//! 2. **Channel** (long-lived): a WebSocket at `GET /agent/v1/channel` with the
//!    header `Authorization: Bearer <hostId>:<hostCredential>`. Every frame is a
//!    JSON text frame: the agent sends [`AgentMessage`]s, the control plane sends
//!    [`ControlMessage`]s. The host is schedulable as soon as the upgrade
//!    succeeds (before the `101` answer is sent). On every (re)connect the control plane first re-sends
//!    a [`ControlMessage::LaunchTask`] for each task assigned to the host that has
//!    not stopped, and a [`ControlMessage::StopTask`] for each one whose desired
//!    status is `STOPPED`, so an agent that restarts converges without local state.
//! 3. **Credential rotation**: the host credential expires `credentialTtlMs` after
//!    it was issued. Before that the agent sends [`AgentMessage::RotateCredential`]
//!    on its channel; the control plane answers [`ControlMessage::CredentialRotated`]
//!    with a new credential (and a new TTL). The previous credential stays valid
//!    for a short overlap (so an agent that did not manage to store the new one can
//!    still reconnect and rotate again), then it is refused. A host whose credential
//!    expired (or was revoked by the operator) is refused at the channel (`401`) and
//!    must register again with a bootstrap token.
//! 4. **Heartbeats**: the agent sends [`AgentMessage::Heartbeat`] at least every
//!    `heartbeatIntervalSecs` (from the registration answer). A host silent for
//!    longer than the control plane's heartbeat timeout is declared lost and its
//!    tasks are stopped.
//! 5. **Logs and metrics**: the agent ships container output in
//!    [`AgentMessage::Logs`] batches and resource-use samples in
//!    [`AgentMessage::TaskMetrics`]. The control plane keeps the lines of containers
//!    whose [`ContainerSpec::log_configuration`] is `awslogs` in that group, in the
//!    stream [`AwsLogs::stream_name`], and serves them through its CloudWatch Logs API.
//! 6. **Draining**: an agent that drains sends [`AgentMessage::Draining`] on each
//!    connection; the control plane then places nothing on the host and moves its
//!    service tasks elsewhere.
//!
//! The agent is not trusted: the control plane checks every message against the
//! host identity of the channel, and answers a message about a task that is not
//! assigned to that host with [`ControlMessage::Error`] (the message has no effect).
//!
//! All field names are camelCase on the wire, like the ECS API.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The container fields the guest init runs as ECS defines them (`dependsOn`,
/// `healthCheck`, `mountPoints`, `ulimits`): one definition of their shape for the whole
/// path, task definition -> host -> guest.
pub use guest_proto::{Condition, Dependency, HealthCheck, MountPoint, Ulimit};

/// Path of the registration endpoint.
pub const REGISTER_PATH: &str = "/agent/v1/register";
/// Path of the WebSocket channel endpoint.
pub const CHANNEL_PATH: &str = "/agent/v1/channel";

/// `POST /agent/v1/register` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// A bootstrap token the operator created (`controlplane tokens create`).
    pub bootstrap_token: String,
    /// The host's name, for operators only.
    pub hostname: String,
    /// The availability zone the host is in, e.g. `us-east-1a`.
    pub availability_zone: String,
    /// CPU units the host offers to tasks (1 vCPU = 1024 units).
    pub cpu: u32,
    /// Memory in MiB the host offers to tasks.
    pub memory: u32,
    /// Optional cell to join: when given it must be the bootstrap token's cell
    /// (the token decides the cell either way).
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
    /// How long the credential is valid from now, in ms (0: not said). The agent
    /// rotates it ([`AgentMessage::RotateCredential`]) before then.
    #[serde(default)]
    pub credential_ttl_ms: u64,
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

/// A container's `logConfiguration`, as in the task definition.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogConfiguration {
    /// The log driver (`awslogs` is the one the platform ships to its log store).
    pub log_driver: String,
    /// Driver options (`awslogs-group`, `awslogs-stream-prefix`, `awslogs-region`,
    /// `awslogs-create-group`, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// The `awslogs` options of a container: where its output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsLogs {
    /// `awslogs-group`.
    pub group: String,
    /// `awslogs-stream-prefix`, if given.
    pub stream_prefix: Option<String>,
    /// `awslogs-region`, if given.
    pub region: Option<String>,
    /// `awslogs-create-group` is `true`.
    pub create_group: bool,
}

impl AwsLogs {
    /// The awslogs options of `spec`, if its log driver is `awslogs` with a group.
    pub fn of(spec: &ContainerSpec) -> Option<AwsLogs> {
        let lc = spec.log_configuration.as_ref()?;
        if lc.log_driver != "awslogs" {
            return None;
        }
        let opt = |k: &str| lc.options.get(k).filter(|v| !v.is_empty()).cloned();
        Some(AwsLogs {
            group: opt("awslogs-group")?,
            stream_prefix: opt("awslogs-stream-prefix"),
            region: opt("awslogs-region"),
            create_group: opt("awslogs-create-group")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }

    /// The log stream of `container` of task `task_arn`, named as ECS's awslogs
    /// driver names it on Fargate: `prefix/container-name/task-id` (task-id: the last
    /// part of the task ARN); without a prefix, `container-name/task-id`.
    pub fn stream_name(&self, container: &str, task_arn: &str) -> String {
        let task_id = task_arn.rsplit('/').next().unwrap_or(task_arn);
        match &self.stream_prefix {
            Some(p) => format!("{p}/{container}/{task_id}"),
            None => format!("{container}/{task_id}"),
        }
    }
}

/// One container to run, with the task definition and the run-time overrides merged.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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
    /// Where the container's output goes (see [`AwsLogs::of`]); none: it is discarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_configuration: Option<LogConfiguration>,
    /// Containers that must reach a condition before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    /// The health check the guest runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Task volumes ([`TaskSpec::volumes`]) mounted into the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_points: Vec<MountPoint>,
    /// Working directory (overrides the image's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    /// `user[:group]` (overrides the image's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Resource limits of the container's processes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
}

/// The task's network attachment (`awsvpcConfiguration` of RunTask).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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
    /// Names of the task's volumes (on the task's volume device, shared by the containers
    /// that mount them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
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

/// Most lines one [`AgentMessage::Logs`] batch may carry.
pub const MAX_LOG_BATCH_LINES: usize = 1000;
/// Most bytes of one log line (longer lines are cut at a character boundary).
pub const MAX_LOG_LINE_BYTES: usize = 16 * 1024;

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// The task.
    pub task_arn: String,
    /// The container (one of the task's).
    pub container: String,
    /// stdout or stderr.
    pub stream: LogStream,
    /// When the line was read, in ms since the Unix epoch.
    pub timestamp: u64,
    /// The line, without its newline.
    pub line: String,
}

/// Cuts `line` to at most [`MAX_LOG_LINE_BYTES`] at a character boundary.
pub fn truncate_log_line(line: &mut String) {
    if line.len() > MAX_LOG_LINE_BYTES {
        let mut end = MAX_LOG_LINE_BYTES;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
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
    /// A batch of container output lines (at most [`MAX_LOG_BATCH_LINES`]), in the
    /// order they were read. The control plane stores the lines of containers with
    /// `awslogs` options in the container's log group and stream.
    #[serde(rename_all = "camelCase")]
    Logs {
        /// The lines.
        lines: Vec<LogLine>,
        /// Lines the agent dropped since its previous batch (its buffer was full
        /// while the channel was down).
        #[serde(default, skip_serializing_if = "is_zero")]
        dropped: u64,
    },
    /// A resource-use sample of one task.
    #[serde(rename_all = "camelCase")]
    TaskMetrics {
        /// The task.
        task_arn: String,
        /// CPU use in percent of the task's CPU units.
        cpu_utilization: f64,
        /// Memory use in percent of the task's memory.
        memory_utilization: f64,
        /// When it was sampled, in ms since the Unix epoch.
        timestamp: u64,
    },
    /// The host is draining: the control plane places no new task on it and moves its
    /// service tasks elsewhere (within each service's deployment limits); other tasks run
    /// on until they stop. Sent again on every connection while the agent drains; a new
    /// connection without it makes the host schedulable again.
    Draining,
    /// Asks for a new host credential (the current one expires); answered with
    /// [`ControlMessage::CredentialRotated`] or [`ControlMessage::Error`].
    RotateCredential,
    /// The health of a container with a `healthCheck` changed (the guest runs the
    /// checks); the task's health follows from its essential containers'.
    #[serde(rename_all = "camelCase")]
    ContainerHealth {
        /// Which task.
        task_arn: String,
        /// Which container of it.
        container: String,
        /// Its new health.
        health_status: HealthStatus,
    },
}

/// Health of a container that has a `healthCheck`, as ECS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    /// No verdict yet (start period, or no check has finished).
    Unknown,
    /// The last checks passed.
    Healthy,
    /// `retries` checks in a row failed.
    Unhealthy,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
    /// The answer to [`AgentMessage::RotateCredential`]: the host's new credential.
    /// The agent stores it and uses it from its next connection; the previous one
    /// is refused after a short overlap.
    #[serde(rename_all = "camelCase")]
    CredentialRotated {
        /// The new secret.
        host_credential: String,
        /// How long it is valid from now, in ms.
        credential_ttl_ms: u64,
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
    fn log_and_metrics_messages_and_old_container_specs() {
        let m = AgentMessage::Logs {
            lines: vec![LogLine {
                task_arn: "arn:t".into(),
                container: "web".into(),
                stream: LogStream::Stderr,
                timestamp: 1700000000123,
                line: "hello".into(),
            }],
            dropped: 0,
        };
        let v: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(v["type"], "logs");
        assert_eq!(v["lines"][0]["taskArn"], "arn:t");
        assert_eq!(v["lines"][0]["stream"], "stderr");
        assert_eq!(v["lines"][0]["timestamp"], 1700000000123u64);
        assert!(v.get("dropped").is_none());
        assert_eq!(serde_json::from_value::<AgentMessage>(v).unwrap(), m);
        let t: AgentMessage = serde_json::from_str(
            r#"{"type":"taskMetrics","taskArn":"a","cpuUtilization":12.5,"memoryUtilization":40,"timestamp":1}"#,
        )
        .unwrap();
        assert!(
            matches!(t, AgentMessage::TaskMetrics { cpu_utilization, .. } if cpu_utilization == 12.5)
        );
        // a spec from before logConfiguration existed still decodes, and has no awslogs
        let old = r#"{"name":"web","image":"i","cpu":0,"essential":true,"stopTimeoutSecs":30}"#;
        let c: ContainerSpec = serde_json::from_str(old).unwrap();
        assert_eq!(c.log_configuration, None);
        assert_eq!(AwsLogs::of(&c), None);
        assert!(!serde_json::to_string(&c)
            .unwrap()
            .contains("logConfiguration"));
    }

    #[test]
    fn awslogs_options_and_stream_names() {
        let mut c: ContainerSpec = serde_json::from_str(
            r#"{"name":"web","image":"i","cpu":0,"essential":true,"stopTimeoutSecs":30,
                "logConfiguration":{"logDriver":"awslogs","options":{"awslogs-group":"g",
                "awslogs-stream-prefix":"p","awslogs-region":"us-east-1","awslogs-create-group":"True"}}}"#,
        )
        .unwrap();
        let a = AwsLogs::of(&c).unwrap();
        assert_eq!(a.group, "g");
        assert_eq!(a.region.as_deref(), Some("us-east-1"));
        assert!(a.create_group);
        assert_eq!(
            a.stream_name("web", "arn:aws:ecs:us-east-1:1:task/c1/abc123"),
            "p/web/abc123"
        );
        let lc = c.log_configuration.as_mut().unwrap();
        lc.options.remove("awslogs-stream-prefix");
        lc.options.remove("awslogs-create-group");
        let a = AwsLogs::of(&c).unwrap();
        assert!(!a.create_group);
        assert_eq!(a.stream_name("web", "arn:x:task/c/t9"), "web/t9");
        c.log_configuration
            .as_mut()
            .unwrap()
            .options
            .remove("awslogs-group");
        assert_eq!(
            AwsLogs::of(&c),
            None,
            "awslogs without a group ships nowhere"
        );
        c.log_configuration = Some(LogConfiguration {
            log_driver: "json-file".into(),
            options: Default::default(),
        });
        assert_eq!(AwsLogs::of(&c), None);
        let mut long = "é".repeat(MAX_LOG_LINE_BYTES);
        truncate_log_line(&mut long);
        assert!(long.len() <= MAX_LOG_LINE_BYTES && long.len() >= MAX_LOG_LINE_BYTES - 1);
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
    fn credential_rotation_messages_and_old_registration_answers() {
        let v = serde_json::to_value(AgentMessage::RotateCredential).unwrap();
        assert_eq!(v, serde_json::json!({"type": "rotateCredential"}));
        let m: ControlMessage = serde_json::from_str(
            r#"{"type":"credentialRotated","hostCredential":"c2","credentialTtlMs":5000}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ControlMessage::CredentialRotated {
                host_credential: "c2".into(),
                credential_ttl_ms: 5000
            }
        );
        // An answer without a TTL (an older control plane) still parses.
        let r: RegisterResponse = serde_json::from_str(
            r#"{"hostId":"h","hostCredential":"c","cell":0,"heartbeatIntervalSecs":1}"#,
        )
        .unwrap();
        assert_eq!(r.credential_ttl_ms, 0);
    }

    #[test]
    fn unknown_message_type_is_an_error() {
        assert!(serde_json::from_str::<ControlMessage>(r#"{"type":"reboot"}"#).is_err());
        assert_eq!(bearer("h", "c"), "Bearer h:c");
    }
}
