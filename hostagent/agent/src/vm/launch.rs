//! The order of a launch and its undo, independent of what each step does (so it is
//! unit-tested with a fake behind [`Steps`]).
//!
//! image + devices -> eni -> jail (config, relay, jailer + vmm) -> guest (boot, RunTask,
//! containers RUNNING). Each step marks in the task's [`TaskState`] what it is about to
//! create and the state is saved before the creation, so a failure here, or an agent
//! killed in the middle, releases exactly what may exist: [`Steps::release`] works from
//! the state alone.

use super::state::TaskState;
use crate::host::runtime::LaunchFailure;
use std::future::Future;

/// What a launch does, step by step.
pub trait Steps: Send + Sync {
    /// Built devices (image roots, scratch, volume).
    type Devices: Send + Sync;
    /// The netd answer (ENIs, netns).
    type Net: Send + Sync;
    /// The started VM.
    type Vm: Send;
    /// The guest session once its containers run.
    type Session: Send;

    /// Saves the state (atomically).
    fn save(&self, st: &TaskState) -> Result<(), LaunchFailure>;
    /// Image roots and devices (steps `image`, `devices`).
    fn devices(
        &self,
        st: &mut TaskState,
    ) -> impl Future<Output = Result<Self::Devices, LaunchFailure>> + Send;
    /// The ENI (step `eni`).
    fn eni(
        &self,
        st: &mut TaskState,
    ) -> impl Future<Output = Result<Self::Net, LaunchFailure>> + Send;
    /// The jail and the vmm (step `jail`).
    fn jail(
        &self,
        st: &mut TaskState,
        devices: &Self::Devices,
        net: &Self::Net,
    ) -> impl Future<Output = Result<Self::Vm, LaunchFailure>> + Send;
    /// Boot and the guest's containers (steps `vm boot`, `guest`).
    fn guest(
        &self,
        st: &mut TaskState,
        devices: &Self::Devices,
        net: &Self::Net,
        vm: &mut Self::Vm,
    ) -> impl Future<Output = Result<Self::Session, LaunchFailure>> + Send;
    /// Releases everything `st` says may exist (newest first); problems are returned.
    fn release(&self, st: &TaskState) -> impl Future<Output = Vec<String>> + Send;
}

/// A launch that succeeded.
pub struct Running<S: Steps> {
    /// The state as saved.
    pub state: TaskState,
    /// The ENIs.
    pub net: S::Net,
    /// The VM.
    pub vm: S::Vm,
    /// The guest session.
    pub session: S::Session,
    /// How long each step took, in order (`devices` includes the image pulls).
    pub phases: Vec<(&'static str, std::time::Duration)>,
}

/// Runs the steps in order; on the first failure releases what the state says exists
/// and returns the failure.
pub async fn launch<S: Steps>(steps: &S, mut st: TaskState) -> Result<Running<S>, LaunchFailure> {
    if let Err(f) = steps.save(&st) {
        steps.release(&st).await;
        return Err(f);
    }
    let mut phases = Vec::with_capacity(4);
    let r = async {
        let mut t = std::time::Instant::now();
        let mut lap = |name: &'static str| {
            phases.push((name, t.elapsed()));
            t = std::time::Instant::now();
        };
        let devices = steps.devices(&mut st).await?;
        lap("devices");
        let net = steps.eni(&mut st).await?;
        lap("eni");
        let mut vm = steps.jail(&mut st, &devices, &net).await?;
        lap("jail");
        let session = steps.guest(&mut st, &devices, &net, &mut vm).await?;
        lap("guest");
        st.running = true;
        steps.save(&st)?;
        Ok::<_, LaunchFailure>((net, vm, session))
    }
    .await;
    match r {
        Ok((net, vm, session)) => Ok(Running {
            state: st,
            net,
            vm,
            session,
            phases,
        }),
        Err(f) => {
            for problem in steps.release(&st).await {
                tracing::warn!(task = %st.task_arn, "release after failed launch: {problem}");
            }
            Err(f)
        }
    }
}

#[cfg(test)]
#[path = "launch_tests.rs"]
mod tests;
