//! The real launch steps: the task's jail uid/gid, the image pipeline, netd, the jail
//! (config file, guest-channel relay, jailer + vmm) and the guest init; and the release
//! of whatever a task's state says exists (the jail id last, once nothing is left).

use super::config::{JailId, VmRuntimeConfig};
use super::devices::{self, Devices};
use super::eni::Netd;
use super::guest::{self, Tracker};
use super::jail::ids::{self, JailIdPool};
use super::jail::{self, JailSpec, Started};
use super::launch::Steps;
use super::process::ProcIdent;
use super::relay;
use super::spec::{self, jail_paths, GuestInputs};
use super::state::{self, TaskState};
use crate::host::runtime::{LaunchFailure, TaskEvents};
use crate::image::ImageStore;
use crate::util::now_ms;
use agent_proto::{Status, TaskSpec};
use guest_proto::host::GuestConnection;
use jailer::CgroupVersion;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// What every task's steps share.
pub struct Shared {
    /// Settings.
    pub cfg: VmRuntimeConfig,
    /// The image pipeline.
    pub images: ImageStore,
    /// netd.
    pub netd: Netd,
    /// Where events go.
    pub events: TaskEvents,
    /// The jail uids/gids (rebuilt from the task states at start).
    pub ids: JailIdPool,
    /// Each task's guest ingest budget (the launch phase and after).
    pub budgets: crate::host::budget::Budgets,
}

/// The steps of one task's launch.
pub struct TaskSteps<'a> {
    /// Shared parts.
    pub shared: &'a Shared,
    /// The task.
    pub spec: &'a TaskSpec,
}

fn fail(step: &str, reason: impl std::fmt::Display) -> LaunchFailure {
    LaunchFailure {
        step: step.into(),
        reason: reason.to_string(),
    }
}

/// The task's jail id (taken by the first step: a state without one is a bug).
fn jail_id_of(st: &TaskState) -> Result<JailId, LaunchFailure> {
    st.jail_id
        .ok_or_else(|| fail("launch", "no jail uid taken"))
}

/// The cgroup version as the jailer's flag.
pub fn cgroup_flag(v: CgroupVersion) -> u8 {
    match v {
        CgroupVersion::V1 => 1,
        CgroupVersion::V2 => 2,
    }
}

/// Host path of the relay's guest socket: `<root>/run/v.sock_1024`.
pub fn guest_socket(cfg: &VmRuntimeConfig, id: &str) -> PathBuf {
    guest_proto::host::guest_initiated_socket_path(
        &devices::in_jail(&cfg.jail_root(id), jail_paths::VSOCK),
        guest_proto::CONTROL_PORT,
    )
}

fn entropy_seed() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// The guest-channel relay could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnRelayError {
    /// Its log file cannot be opened.
    #[error("relay.log: {0}")]
    Log(#[source] std::io::Error),
    /// The `hostagent` binary cannot be run.
    #[error("{}: {source}", exe.display())]
    Spawn {
        /// `VmRuntimeConfig::relay_exe`.
        exe: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It ended before its pid was read.
    #[error("relay exited at once")]
    ExitedAtOnce,
    /// Its process identity cannot be read.
    #[error("relay: {0}")]
    Ident(#[source] std::io::Error),
    /// The task has no jail id.
    #[error("no jail uid taken")]
    NoJailId,
}

/// Starts `hostagent vm-relay` for a task (own process group: it outlives the agent).
pub fn spawn_relay(cfg: &VmRuntimeConfig, st: &TaskState) -> Result<ProcIdent, SpawnRelayError> {
    let id = st.jail_id.ok_or(SpawnRelayError::NoJailId)?;
    let dir = cfg.task_dir(&st.task_id);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("relay.log"))
        .map_err(SpawnRelayError::Log)?;
    let mut cmd = std::process::Command::new(&cfg.relay_exe);
    cmd.arg("vm-relay")
        .arg("--guest-socket")
        .arg(guest_socket(cfg, &st.task_id))
        .arg("--agent-socket")
        .arg(dir.join("relay.sock"))
        .args(["--uid", &id.uid.to_string(), "--gid", &id.gid.to_string()])
        .args(["--queue-bytes", &cfg.relay_queue_bytes.to_string()])
        .args([
            "--boot-timeout-ms",
            // The agent's own boot timeout decides; the relay's only bounds its life.
            &(cfg.boot_timeout + Duration::from_secs(5))
                .as_millis()
                .to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0);
    // tokio reaps the child once it exits (the handle is dropped on purpose: the relay
    // is found again through its pid and start time).
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(|source| SpawnRelayError::Spawn {
            exe: cfg.relay_exe.clone(),
            source,
        })?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or(SpawnRelayError::ExitedAtOnce)?;
    ProcIdent::of(pid).map_err(|e| {
        // Not recorded in the state, so not released later: end it now.
        let _ = child.start_kill();
        SpawnRelayError::Ident(e)
    })
}

impl Steps for TaskSteps<'_> {
    type Devices = Devices;
    type Net = netd::model::Task;
    type Vm = Started;
    type Session = (GuestConnection, Tracker);

    fn save(&self, st: &TaskState) -> Result<(), LaunchFailure> {
        state::save(&self.shared.cfg.task_dir(&st.task_id), st)
            .map_err(|e| fail("launch", format!("task state: {e}")))
    }

    async fn jail_id(&self, st: &mut TaskState) -> Result<(), LaunchFailure> {
        let range = self.shared.ids.ids();
        // Ids some host process still runs with (a vmm not yet reaped, a stranger) are
        // never handed out, whatever the recorded states say.
        let busy = tokio::task::spawn_blocking(move || ids::ids_in_use(range))
            .await
            .map_err(|e| fail("launch", e))?;
        let id = self
            .shared
            .ids
            .allocate(&st.task_id, &busy)
            .map_err(|e| fail("launch", e))?;
        st.jail_id = Some(id);
        Ok(())
    }

    async fn devices(&self, st: &mut TaskState) -> Result<Devices, LaunchFailure> {
        let cfg = &self.shared.cfg;
        let id = jail_id_of(st)?;
        let root = cfg.jail_root(&st.task_id);
        devices::create_jail_root(&root)?;
        st.jail_dir = Some(cfg.jail_dir(&st.task_id));
        self.save(st)?;
        devices::build(
            &self.shared.images,
            self.spec,
            &root,
            &cfg.task_dir(&st.task_id).join("work"),
            &cfg.kernel,
            &cfg.initramfs,
            (id.uid, id.gid),
        )
        .await
    }

    async fn eni(&self, st: &mut TaskState) -> Result<netd::model::Task, LaunchFailure> {
        let cfg = &self.shared.cfg;
        let id = jail_id_of(st)?;
        st.netd_task = true;
        self.save(st)?;
        let task = self
            .shared
            .netd
            .create(
                &st.task_id,
                self.spec,
                &cfg.default_subnet,
                (id.uid, id.gid),
            )
            .await
            .map_err(|e| fail("eni", e))?;
        st.eni_ip = task.enis.first().map(|e| e.ip.to_string());
        self.save(st)?;
        Ok(task)
    }

    async fn jail(
        &self,
        st: &mut TaskState,
        _devices: &Devices,
        net: &netd::model::Task,
    ) -> Result<Started, LaunchFailure> {
        let cfg = &self.shared.cfg;
        let id = jail_id_of(st)?;
        let root = cfg.jail_root(&st.task_id);
        let taps: Vec<(String, String)> = net
            .enis
            .iter()
            .map(|e| (e.tap.clone(), e.mac.clone()))
            .collect();
        devices::write_vm_config(
            &root,
            &spec::vm_config(self.spec, &taps, &cfg.extra_boot_args),
        )?;
        let run = root.join("run");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&run)
            .map_err(|e| fail("jail", format!("{}: {e}", run.display())))?;
        st.relay_socket = Some(cfg.task_dir(&st.task_id).join("relay.sock"));
        st.vsock_path = Some(devices::in_jail(&root, jail_paths::VSOCK));
        // A socket left by an earlier launch must not pass for this relay's.
        let _ = std::fs::remove_file(cfg.task_dir(&st.task_id).join("relay.sock"));
        let relay = spawn_relay(cfg, st).map_err(|e| fail("jail", e))?;
        st.relay = Some(relay);
        self.save(st)?;
        // The relay binds the agent's socket after the guest's (which it removes once the
        // guest connected): the agent's socket says both are ready.
        let ready = cfg.task_dir(&st.task_id).join("relay.sock");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !ready.exists() {
            if !relay.alive() || tokio::time::Instant::now() >= deadline {
                let log = jail::tail(&cfg.task_dir(&st.task_id).join("relay.log"), 400);
                return Err(fail(
                    "jail",
                    format!("guest-channel relay did not start: {log}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut cgroups = jailer::task_limits(
            cfg.cgroup_version,
            self.spec.cpu,
            u64::from(self.spec.memory) + cfg.memory_overhead_mib,
        );
        if cfg.cgroup_version == CgroupVersion::V1 {
            // The metrics read cpuacct.usage: a setting in that controller makes the
            // jailer create (and the vmm join) the cpuacct cgroup too, also where cpu and
            // cpuacct are separate hierarchies. Writing 0 just resets the counter.
            cgroups.push("cpuacct.usage=0".into());
        }
        let js = JailSpec {
            jailer: cfg.jailer.clone(),
            exec_file: cfg.vmm.clone(),
            id: st.task_id.clone(),
            uid: id.uid,
            gid: id.gid,
            chroot_base: cfg.chroot_base.clone(),
            netns: Some(PathBuf::from(&net.netns_path)),
            cgroup_version: cgroup_flag(cfg.cgroup_version),
            parent_cgroup: cfg.parent_cgroup.clone(),
            cgroups,
            vmm_args: cfg.vmm_args.clone(),
            console: cfg.task_dir(&st.task_id).join("console.log"),
        };
        st.jailer_started = true;
        self.save(st)?;
        let started = jail::start(&js, Duration::from_secs(10))
            .await
            .map_err(|e| fail("jail", e))?;
        st.vmm = Some(started.vmm);
        self.save(st)?;
        Ok(started)
    }

    async fn guest(
        &self,
        st: &mut TaskState,
        devices: &Devices,
        net: &netd::model::Task,
        vm: &mut Started,
    ) -> Result<(GuestConnection, Tracker), LaunchFailure> {
        let cfg = &self.shared.cfg;
        let task = spec::guest_task(
            self.spec,
            &devices.procs,
            &net.enis,
            &GuestInputs {
                host_time_ms: now_ms(),
                entropy_seed: entropy_seed(),
            },
        );
        guest_proto::validate_task(&task).map_err(|e| fail("guest", format!("task spec: {e}")))?;
        let relay_socket = st
            .relay_socket
            .clone()
            .ok_or_else(|| fail("vm boot", "no relay socket"))?;
        let names = st.containers.clone();
        let arn = st.task_arn.clone();
        let vmm = vm.vmm;
        let (boot, start) = (cfg.boot_timeout, cfg.start_timeout);
        let events = self.shared.events.clone();
        let budgets = self.shared.budgets.clone();
        let console = cfg.task_dir(&st.task_id).join("console.log");
        let r = tokio::task::spawn_blocking(move || {
            let mut conn = relay::connect(&relay_socket, Duration::from_secs(5))
                .map_err(|e| fail("vm boot", e))?;
            let mut tracker = Tracker::new(&arn, &names, Status::Pending);
            let t0 = std::time::Instant::now();
            let mut gate = crate::host::budget::IngestGate::new(&budgets, t0);
            let r = guest::start_task(
                &mut conn,
                &task,
                &mut tracker,
                guest::Limits {
                    boot_timeout: boot,
                    start_timeout: start,
                    gate: &mut gate,
                },
                &|| vmm.alive(),
                &events,
            );
            if let Some(at) = tracker.accepted_at {
                tracing::info!(task = %arn, boot_ms = at.duration_since(t0).as_millis(),
                    containers_ms = at.elapsed().as_millis(), "guest answered; containers started");
            }
            r?;
            Ok::<_, LaunchFailure>((conn, tracker))
        })
        .await
        .map_err(|e| fail("guest", e))?;
        let relay_log = cfg.task_dir(&st.task_id).join("relay.log");
        r.map_err(|mut f| {
            if f.step == "vm boot" {
                for (what, path) in [("relay", &relay_log), ("console", &console)] {
                    let tail = jail::tail(path, 300);
                    if !tail.is_empty() {
                        f.reason = format!("{} ({what}: {tail})", f.reason);
                    }
                }
            }
            f
        })
    }

    async fn release(&self, st: &TaskState) -> Vec<String> {
        release(self.shared, st).await
    }
}

/// Releases what `st` says may exist, newest first: relay, vmm, jail (`jailer
/// --cleanup`, or the directory if the jailer never ran), netd task (its taps), state
/// directory, and last the jail id; if anything could not be released the state
/// directory is kept (with the problems logged) and the id stays held, so it is not
/// given to another task while something of this one may remain.
pub async fn release(shared: &Shared, st: &TaskState) -> Vec<String> {
    let cfg = &shared.cfg;
    let mut problems = Vec::new();
    if let Some(r) = st.relay {
        if !r.kill_and_wait(Duration::from_secs(5)).await {
            problems.push(format!("relay pid {} does not exit", r.pid));
        }
    }
    if let Some(v) = st.vmm {
        if !v.kill_and_wait(Duration::from_secs(10)).await {
            problems.push(format!("vmm pid {} does not exit", v.pid));
        }
    }
    if st.jailer_started {
        if let Err(e) = jail::cleanup(
            &cfg.jailer,
            &st.task_id,
            &cfg.exec_name(),
            &cfg.chroot_base,
            cgroup_flag(cfg.cgroup_version),
            &cfg.parent_cgroup,
        )
        .await
        {
            problems.push(e.to_string());
        }
    }
    if let Some(dir) = &st.jail_dir {
        if dir.exists() && super::config::is_within(dir, &cfg.chroot_base) {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                problems.push(format!("{}: {e}", dir.display()));
            }
        }
    }
    if st.netd_task {
        if let Err(e) = shared.netd.release(&st.task_id).await {
            problems.push(format!("netd: {e}"));
        }
    }
    let dir = cfg.task_dir(&st.task_id);
    if problems.is_empty() {
        match state::remove(&dir) {
            Ok(()) => {
                if let Some(id) = st.jail_id {
                    shared.ids.release(&st.task_id, id);
                }
            }
            Err(e) => problems.push(format!("{}: {e}", dir.display())),
        }
    } else {
        tracing::error!(task = %st.task_arn, "not fully released (state kept in {}): {}",
            dir.display(), problems.join("; "));
    }
    problems
}
