//! The seam between the agent channel and what actually runs a task (netd ENIs,
//! image devices, jailer + vmm, guest init). The channel side only sees this trait.

use agent_proto::{ContainerState, TaskSpec};
use std::future::Future;

/// A launch that failed at `step` (the task's stoppedReason is `"<step>: <reason>"`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{step}: {reason}")]
pub struct LaunchFailure {
    /// The launch step, e.g. `launch`, `image`, `eni`, `vm boot`.
    pub step: String,
    /// Why.
    pub reason: String,
}

/// A task that is running.
#[derive(Debug, Clone, PartialEq)]
pub struct Launched {
    /// The ENI address.
    pub private_ipv4_address: Option<String>,
    /// Container states (RUNNING).
    pub containers: Vec<ContainerState>,
}

/// Which output stream a container log line came from; what a runtime reports
/// ([`TaskEvent`]) and where it sends it ([`TaskEvents`], bounded per task: see
/// [`super::outbox`]).
pub use super::outbox::{task_events, LogStream, TaskEvent, TaskEvents, TaskEventsRx};

/// Runs tasks on this host.
pub trait TaskRuntime: Send + Sync + 'static {
    /// Starts `spec`; returns once it runs, or why it could not (having released
    /// whatever it had set up).
    fn launch(
        &self,
        spec: &TaskSpec,
    ) -> impl Future<Output = Result<Launched, LaunchFailure>> + Send;

    /// Why [`TaskRuntime::adopt`] could not take a task over (its text goes into the
    /// task's stoppedReason, after `agent restart: `).
    type AdoptError: std::error::Error + Send + 'static;

    /// After an agent restart: takes over a task the registry says was PENDING or
    /// RUNNING (its VM outlives the agent), or says why it cannot (it died meanwhile).
    fn adopt(
        &self,
        spec: &TaskSpec,
    ) -> impl Future<Output = Result<Launched, Self::AdoptError>> + Send;

    /// Stops a task this runtime launched (SIGTERM, stop timeout, SIGKILL), releases
    /// its resources and returns the final container states.
    fn stop(
        &self,
        spec: &TaskSpec,
        reason: &str,
    ) -> impl Future<Output = Vec<ContainerState>> + Send;
}

/// The runtime of this agent build: the microVM launch path (netd + jailer + vmm +
/// guest init) is not wired yet, so every launch fails honestly at the `launch` step.
#[derive(Debug, Clone, Default)]
pub struct UnavailableRuntime;

/// The stoppedReason every launch gets from [`UnavailableRuntime`].
pub const UNAVAILABLE_REASON: &str = "microVM runtime not available on this agent";

/// [`UnavailableRuntime`] adopts nothing (text: [`UNAVAILABLE_REASON`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", UNAVAILABLE_REASON)]
pub struct Unavailable;

impl TaskRuntime for UnavailableRuntime {
    type AdoptError = Unavailable;

    async fn launch(&self, _spec: &TaskSpec) -> Result<Launched, LaunchFailure> {
        Err(LaunchFailure {
            step: "launch".into(),
            reason: UNAVAILABLE_REASON.into(),
        })
    }

    async fn adopt(&self, _spec: &TaskSpec) -> Result<Launched, Unavailable> {
        Err(Unavailable)
    }

    async fn stop(&self, _spec: &TaskSpec, _reason: &str) -> Vec<ContainerState> {
        vec![]
    }
}
