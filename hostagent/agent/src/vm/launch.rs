//! The order of a launch and its undo, independent of what each step does (so it is
//! unit-tested with a fake behind [`Steps`]).
//!
//! jail id -> image + devices -> eni -> jail (config, relay, jailer + vmm) -> guest (boot, RunTask,
//! containers RUNNING). Each step marks in the task's [`TaskState`] what it is about to
//! create and the state is saved before the creation, so a failure here, or an agent
//! killed in the middle, releases exactly what may exist: [`Steps::release`] works from
//! the state alone, and gives the task's jail id back only once all of it is gone.

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
    /// Takes the task's jail uid/gid into `st.jail_id` (step `launch` when none is
    /// free); nothing else exists yet, and the first save records it.
    fn jail_id(&self, st: &mut TaskState)
        -> impl Future<Output = Result<(), LaunchFailure>> + Send;
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
    /// Releases everything `st` says may exist (newest first), then its jail id once
    /// nothing is left; problems are returned.
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
    steps.jail_id(&mut st).await?;
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
mod tests {
    //! The launch order and release-on-failure, with a fake behind `Steps`.

    use super::*;
    use crate::vm::config::JailId;
    use std::sync::Mutex;

    /// Records calls; fails at the step named `fail_at`. Jail ids come from a pool of
    /// two, given back by `release`.
    struct Fake {
        fail_at: Option<&'static str>,
        calls: Mutex<Vec<String>>,
        released: Mutex<Vec<TaskState>>,
        free_ids: Mutex<Vec<u32>>,
    }

    impl Fake {
        fn new(fail_at: Option<&'static str>) -> Fake {
            Fake {
                fail_at,
                calls: Mutex::new(vec![]),
                released: Mutex::new(vec![]),
                free_ids: Mutex::new(vec![501, 500]),
            }
        }
        fn step(&self, name: &'static str) -> Result<(), LaunchFailure> {
            self.calls.lock().unwrap().push(name.to_string());
            if self.fail_at == Some(name) {
                return Err(LaunchFailure {
                    step: name.into(),
                    reason: "injected".into(),
                });
            }
            Ok(())
        }
    }

    impl Steps for Fake {
        type Devices = ();
        type Net = String;
        type Vm = u32;
        type Session = &'static str;

        fn save(&self, st: &TaskState) -> Result<(), LaunchFailure> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("save running={}", st.running));
            assert!(st.jail_id.is_some(), "a state is saved with its jail id");
            if self.fail_at == Some("save") || (self.fail_at == Some("last save") && st.running) {
                return Err(LaunchFailure {
                    step: "launch".into(),
                    reason: "disk full".into(),
                });
            }
            Ok(())
        }
        async fn jail_id(&self, st: &mut TaskState) -> Result<(), LaunchFailure> {
            self.calls.lock().unwrap().push("jail id".into());
            let uid = self.free_ids.lock().unwrap().pop().ok_or(LaunchFailure {
                step: "launch".into(),
                reason: "no free jail uid".into(),
            })?;
            st.jail_id = Some(JailId { uid, gid: uid });
            Ok(())
        }
        async fn devices(&self, st: &mut TaskState) -> Result<(), LaunchFailure> {
            st.jail_dir = Some("/jail".into());
            self.step("devices")
        }
        async fn eni(&self, st: &mut TaskState) -> Result<String, LaunchFailure> {
            st.netd_task = true;
            self.step("eni")?;
            st.eni_ip = Some("10.0.0.5".into());
            Ok("net".into())
        }
        async fn jail(
            &self,
            st: &mut TaskState,
            _: &(),
            net: &String,
        ) -> Result<u32, LaunchFailure> {
            assert_eq!(net, "net");
            st.jailer_started = true;
            self.step("jail")?;
            Ok(7)
        }
        async fn guest(
            &self,
            _: &mut TaskState,
            _: &(),
            _: &String,
            vm: &mut u32,
        ) -> Result<&'static str, LaunchFailure> {
            assert_eq!(*vm, 7);
            self.step("guest")?;
            Ok("session")
        }
        async fn release(&self, st: &TaskState) -> Vec<String> {
            self.calls.lock().unwrap().push("release".into());
            self.released.lock().unwrap().push(st.clone());
            if let Some(id) = st.jail_id {
                self.free_ids.lock().unwrap().push(id.uid);
            }
            vec![]
        }
    }

    fn state() -> TaskState {
        TaskState {
            task_arn: "arn:t".into(),
            task_id: "t1".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn steps_run_in_order_and_nothing_is_released_on_success() {
        let f = Fake::new(None);
        let r = launch(&f, state()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.session, "session");
        let names: Vec<&str> = r.phases.iter().map(|p| p.0).collect();
        assert_eq!(names, vec!["devices", "eni", "jail", "guest"]);
        assert!(r.state.running);
        assert_eq!(r.state.eni_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(r.state.jail_id, Some(JailId { uid: 500, gid: 500 }));
        assert_eq!(
            *f.calls.lock().unwrap(),
            vec![
                "jail id",
                "save running=false",
                "devices",
                "eni",
                "jail",
                "guest",
                "save running=true"
            ]
        );
        assert!(f.released.lock().unwrap().is_empty());
    }

    /// (failing step, steps called, (jail dir, netd task, jailer) in the released state)
    type Case = (&'static str, &'static [&'static str], (bool, bool, bool));

    #[tokio::test]
    async fn a_failure_stops_the_launch_and_releases_what_was_started() {
        // (failing step, steps called, what the released state says exists)
        let cases: [Case; 5] = [
            ("devices", &["devices"], (true, false, false)),
            ("eni", &["devices", "eni"], (true, true, false)),
            ("jail", &["devices", "eni", "jail"], (true, true, true)),
            (
                "guest",
                &["devices", "eni", "jail", "guest"],
                (true, true, true),
            ),
            // Everything ran, but the running state could not be recorded.
            (
                "last save",
                &["devices", "eni", "jail", "guest"],
                (true, true, true),
            ),
        ];
        for (at, called, (jail, netd, jailer)) in cases {
            let f = Fake::new(Some(at));
            let Err(e) = launch(&f, state()).await else {
                panic!("launch failing at {at} succeeded")
            };
            if at == "last save" {
                assert_eq!(
                    (e.step.as_str(), e.reason.as_str()),
                    ("launch", "disk full")
                );
            } else {
                assert_eq!((e.step.as_str(), e.reason.as_str()), (at, "injected"));
            }
            let calls = f.calls.lock().unwrap().clone();
            let steps: Vec<&str> = calls
                .iter()
                .map(String::as_str)
                .filter(|c| !c.starts_with("save") && *c != "release" && *c != "jail id")
                .collect();
            assert_eq!(steps, called, "failing at {at}");
            assert_eq!(
                calls.last().map(String::as_str),
                Some("release"),
                "failing at {at}"
            );
            let rel = f.released.lock().unwrap();
            assert_eq!(rel.len(), 1, "released once");
            assert_eq!(
                (
                    rel[0].jail_dir.is_some(),
                    rel[0].netd_task,
                    rel[0].jailer_started
                ),
                (jail, netd, jailer),
                "failing at {at}"
            );
            assert_eq!(rel[0].running, at == "last save", "failing at {at}");
            assert_eq!(
                rel[0].jail_id,
                Some(JailId { uid: 500, gid: 500 }),
                "failing at {at}: the release gets the jail id"
            );
            // The id is back in the pool: two more launches can take both ids.
            assert_eq!(f.free_ids.lock().unwrap().len(), 2, "failing at {at}");
        }
    }

    #[tokio::test]
    async fn no_free_jail_id_refuses_the_launch_before_anything_is_made() {
        let f = Fake::new(None);
        f.free_ids.lock().unwrap().clear();
        let Err(e) = launch(&f, state()).await else {
            panic!("succeeded")
        };
        assert_eq!(e.step, "launch");
        assert!(e.reason.contains("no free jail uid"), "{e}");
        assert_eq!(*f.calls.lock().unwrap(), vec!["jail id"]);
        assert!(f.released.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn concurrent_launches_hold_distinct_ids_until_released() {
        let f = Fake::new(None);
        let a = launch(&f, state()).await.unwrap_or_else(|e| panic!("{e}"));
        let b = launch(&f, state()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(a.state.jail_id, b.state.jail_id);
        assert!(
            launch(&f, state()).await.is_err(),
            "third launch: pool empty"
        );
        f.release(&a.state).await;
        let c = launch(&f, state()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.state.jail_id, a.state.jail_id);
    }

    #[tokio::test]
    async fn a_state_that_cannot_be_saved_fails_before_anything_is_created() {
        let f = Fake::new(Some("save"));
        let Err(e) = launch(&f, state()).await else {
            panic!("succeeded")
        };
        assert_eq!(e.step, "launch");
        assert_eq!(
            *f.calls.lock().unwrap(),
            vec!["jail id", "save running=false", "release"]
        );
        assert_eq!(f.free_ids.lock().unwrap().len(), 2, "the id was given back");
    }
}
