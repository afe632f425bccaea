//! The microVM runtime's launch path with real components: the image pipeline (busybox
//! OCI layout made with umoci -> ext4 devices in the jail), real netd (ENI in the task's
//! netns), the real jailer (chroot, cgroups, uid drop, new PID namespace) and the real
//! relay process. This machine's /dev/kvm cannot boot Linux, so the jailed "vmm" is the
//! jailer's static jail-probe (`wait-signal`): no guest ever answers, the launch fails at
//! `vm boot`, and everything it created must be gone afterwards. Root only; needs the
//! `netd` and `jailer` binaries of the workspace (built by `cargo test --workspace`).

mod common;
mod vm_support;

use agent_proto::{NetworkSpec, TaskSpec};
use hostagent::host::runtime::TaskRuntime;
use hostagent::vm::config::task_id;
use hostagent::vm::process::ProcIdent;
use hostagent::vm::state::{self, TaskState};
use hostagent::vm::{MicroVmRuntime, VmRuntimeConfig};
use jailer::CgroupVersion;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vm_support::*;

const UID: u32 = 41301;

struct Env {
    _cgroups: ParentCgroups,
    _dir: tempfile::TempDir,
    root: PathBuf,
    netd: Netd,
    cfg: VmRuntimeConfig,
    layout: PathBuf,
}

fn env(name: &str) -> Option<Env> {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return None;
    }
    let (Some(netd_bin), Some(jailer_bin)) = (workspace_bin("netd"), workspace_bin("jailer"))
    else {
        eprintln!("SKIPPED: netd/jailer binaries not built (cargo build -p netd -p jailer)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let layout = common::busybox_layout(&root.join("img"));
    let netd = Netd::start(&netd_bin, &root.join("netd"));
    std::fs::write(root.join("vmlinux"), b"not a kernel").unwrap();
    std::fs::write(root.join("initrd"), b"not an initramfs").unwrap();
    let mut cfg = VmRuntimeConfig::new(
        root.join("vmlinux"),
        root.join("initrd"),
        jailer_bin,
        probe(),
        root.join("state"),
    );
    cfg.relay_exe = env!("CARGO_BIN_EXE_hostagent").into();
    cfg.netd_socket = netd.socket.clone();
    cfg.chroot_base = root.join("jails");
    cfg.uid = UID;
    cfg.gid = UID;
    cfg.cgroup_version = if Path::new("/sys/fs/cgroup/cpu/cgroup.procs").exists() {
        CgroupVersion::V1
    } else {
        CgroupVersion::V2
    };
    cfg.parent_cgroup = format!("hostagent-test-{}-{name}", std::process::id());
    cfg.default_subnet = netd.subnet.clone();
    // The test's images are local layouts: allowed explicitly, as an operator would.
    cfg.allow_oci_layout = true;
    cfg.boot_timeout = Duration::from_secs(2);
    cfg.start_timeout = Duration::from_secs(2);
    // The probe waits for a signal, like a vmm whose guest never answers.
    cfg.vmm_args = vec!["wait-signal".into()];
    cfg.validate().unwrap();
    Some(Env {
        _cgroups: ParentCgroups(cfg.clone()),
        _dir: dir,
        root,
        netd,
        cfg,
        layout,
    })
}

fn spec(arn: &str, image: &str) -> TaskSpec {
    TaskSpec {
        task_arn: arn.into(),
        account_id: "123456789012".into(),
        task_definition_arn: "arn:aws:ecs:local:123456789012:task-definition/web:1".into(),
        cpu: 256,
        memory: 512,
        containers: vec![serde_json::from_value(serde_json::json!({
            "name": "web", "image": image, "cpu": 0, "essential": true,
            "command": ["httpd", "-f"], "stopTimeoutSecs": 2
        }))
        .unwrap()],
        network: NetworkSpec {
            subnets: vec!["subnet-unknown-to-netd".into()],
            security_groups: vec![],
            assign_public_ip: false,
        },
        volumes: vec![],
    }
}

/// What a watcher saw while the launch ran.
#[derive(Default, Debug)]
struct Seen {
    netd_task: Option<netd::model::Task>,
    vm_config: Option<serde_json::Value>,
    root_device: Option<(u32, u64)>,
    vmm_uid: Option<u32>,
    relay_socket: bool,
}

fn cgroup_dirs(cfg: &VmRuntimeConfig, id: &str) -> Vec<PathBuf> {
    let rel = format!("{}/{id}", cfg.parent_cgroup);
    match cfg.cgroup_version {
        CgroupVersion::V1 => ["cpu", "cpuacct", "memory"]
            .iter()
            .map(|c| Path::new("/sys/fs/cgroup").join(c).join(&rel))
            .collect(),
        CgroupVersion::V2 => vec![Path::new("/sys/fs/cgroup").join(&rel)],
    }
}

/// Removes the tests' parent cgroups (left empty by `jailer --cleanup`) on drop.
struct ParentCgroups(VmRuntimeConfig);

impl Drop for ParentCgroups {
    fn drop(&mut self) {
        for d in cgroup_dirs(&self.0, "x") {
            if let Some(p) = d.parent() {
                let _ = std::fs::remove_dir(p);
            }
        }
    }
}

async fn assert_released(e: &Env, id: &str) {
    let tasks = e.netd.client().tasks().await.unwrap();
    assert!(
        tasks.iter().all(|t| t.task_id != id),
        "netd task left: {tasks:?}"
    );
    let jail = e.cfg.jail_dir(id);
    assert!(!jail.exists(), "jail left: {}", jail.display());
    for d in cgroup_dirs(&e.cfg, id) {
        assert!(!d.exists(), "cgroup left: {}", d.display());
    }
    let task_dir = e.cfg.task_dir(id);
    assert!(!task_dir.exists(), "state left: {}", task_dir.display());
    let relays = processes_mentioning(&task_dir.join("relay.sock").display().to_string());
    assert!(relays.is_empty(), "relay processes left: {relays:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_builds_everything_then_fails_at_vm_boot_and_releases_it_all() {
    let Some(e) = env("boot") else { return };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let rt = MicroVmRuntime::new(e.cfg.clone(), tx).unwrap();
    let arn = "arn:aws:ecs:local:123456789012:task/default/boot1";
    let id = task_id(arn);
    let s = spec(arn, &format!("oci-layout:{}:v1", e.layout.display()));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (seen, stop, cfg, client, id) = (
            seen.clone(),
            stop.clone(),
            e.cfg.clone(),
            e.netd.client(),
            id.clone(),
        );
        tokio::spawn(async move {
            let root = cfg.jail_root(&id);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(t) = client.task(&id).await {
                    seen.lock().unwrap().netd_task = Some(t);
                }
                if let Ok(b) = std::fs::read(root.join("vm.json")) {
                    seen.lock().unwrap().vm_config = serde_json::from_slice(&b).ok();
                }
                if let Ok(m) = std::fs::metadata(root.join("root0.ext4")) {
                    use std::os::unix::fs::MetadataExt;
                    seen.lock().unwrap().root_device = Some((m.uid(), m.len()));
                }
                if let Ok(p) = std::fs::read_to_string(root.join("jail-probe.pid")) {
                    if let Some(uid) = p.trim().parse().ok().and_then(uid_of) {
                        seen.lock().unwrap().vmm_uid = Some(uid);
                    }
                }
                if cfg.task_dir(&id).join("relay.sock").exists() {
                    seen.lock().unwrap().relay_socket = true;
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    let err = rt.launch(&s).await.unwrap_err();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    watcher.await.unwrap();
    assert_eq!(err.step, "vm boot", "{err}");
    assert!(err.reason.contains("did not answer"), "{err}");
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    // ENI from netd (the task's unknown subnet fell back to the default one).
    let t = seen
        .netd_task
        .as_ref()
        .expect("netd task existed during the launch");
    assert_eq!(t.enis.len(), 1);
    assert!(t.enis[0].ip.to_string().starts_with(&e.netd.net), "{t:?}");
    // The vmm config file in the jail, with the tap from netd and jail paths.
    let c = seen.vm_config.as_ref().expect("vm.json existed");
    assert_eq!(c["machine-config"]["vcpu_count"], 1);
    assert_eq!(c["machine-config"]["mem_size_mib"], 512);
    assert_eq!(
        c["network-interfaces"][0]["host_dev_name"],
        t.enis[0].tap.as_str()
    );
    assert_eq!(
        c["network-interfaces"][0]["guest_mac"],
        t.enis[0].mac.as_str()
    );
    assert_eq!(c["drives"][0]["path_on_host"], "/root0.ext4");
    assert_eq!(c["vsock"]["uds_path"], "/run/v.sock");
    // The image root was built in the jail, owned by the vmm's uid.
    let (owner, size) = seen.root_device.expect("root0.ext4 existed");
    assert_eq!(owner, UID);
    assert!(size > 1 << 20, "{size}");
    // The jailer started the "vmm" as the unprivileged uid; the relay was up.
    assert_eq!(seen.vmm_uid, Some(UID));
    assert!(seen.relay_socket);
    assert_released(&e, &id).await;
    let _ = &e.root;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_at_image_and_jail_name_their_step_and_leave_nothing() {
    let Some(mut e) = env("fail") else { return };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let rt = MicroVmRuntime::new(e.cfg.clone(), tx).unwrap();
    // A missing image: nothing else was started.
    let arn = "arn:aws:ecs:local:123456789012:task/default/img1";
    let err = rt
        .launch(&spec(arn, &format!("oci-layout:{}/nope", e.root.display())))
        .await
        .unwrap_err();
    assert_eq!(err.step, "image", "{err}");
    assert!(err.reason.contains("container web"), "{err}");
    assert_released(&e, &task_id(arn)).await;
    // A vmm the jailer cannot run (dynamically linked): fails at the jail step after the
    // ENI was made; the ENI and the jail are released.
    let dynamic = e.root.join("vmm-dynamic");
    std::fs::copy("/bin/true", &dynamic).unwrap();
    e.cfg.vmm = dynamic;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let rt = MicroVmRuntime::new(e.cfg.clone(), tx).unwrap();
    let arn = "arn:aws:ecs:local:123456789012:task/default/jail1";
    let err = rt
        .launch(&spec(arn, &format!("oci-layout:{}:v1", e.layout.display())))
        .await
        .unwrap_err();
    assert_eq!(err.step, "jail", "{err}");
    assert!(err.reason.contains("jailer exited"), "{err}");
    assert_released(&e, &task_id(arn)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_reports_a_vm_that_died_and_releases_its_eni() {
    let Some(e) = env("adopt") else { return };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let rt = MicroVmRuntime::new(e.cfg.clone(), tx).unwrap();
    let arn = "arn:aws:ecs:local:123456789012:task/default/adopt1";
    let s = spec(arn, "unused");
    let err = rt.adopt(&s).await.unwrap_err();
    assert!(err.to_string().contains("no microVM state"), "{err}");
    // A task whose VM ran when the agent died: its ENI exists, its vmm is gone.
    let id = task_id(arn);
    let req = netd::CreateTaskRequest {
        enis: vec![netd::EniRequest {
            subnet: e.netd.subnet.clone(),
            security_groups: vec![],
            public_ip: None,
        }],
        tap_uid: None,
        tap_gid: None,
    };
    e.netd.client().create_task(&id, &req).await.unwrap();
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_id = ProcIdent::of(dead.id() as i32).unwrap();
    dead.wait().unwrap();
    let st = TaskState {
        task_arn: arn.into(),
        task_id: id.clone(),
        cpu: 256,
        memory: 512,
        containers: vec!["web".into()],
        netd_task: true,
        vmm: Some(dead_id),
        running: true,
        ..Default::default()
    };
    state::save(&e.cfg.task_dir(&id), &st).unwrap();
    let err = rt.adopt(&s).await.unwrap_err();
    assert!(
        err.to_string().contains("exited while the agent was down"),
        "{err}"
    );
    assert_released(&e, &id).await;
    // stop of a task the runtime does not know: every container STOPPED with the reason.
    let c = rt.stop(&s, "user stop").await;
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].reason.as_deref(), Some("user stop"));
}
