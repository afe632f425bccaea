//! The microVM runtime's launch path with real components: the image pipeline (busybox
//! OCI layout made with umoci -> ext4 devices in the jail), real netd (ENI in the task's
//! netns), the real jailer (chroot, cgroups, uid drop, new PID namespace) and the real
//! relay process. This machine's /dev/kvm cannot boot Linux, so the jailed "vmm" is the
//! jailer's static jail-probe (`wait-signal`): no guest ever answers, the launch fails at
//! `vm boot`, and everything it created must be gone afterwards. Where a task must run,
//! the test plays its guest init on the relay's guest socket (`play_guest`). Root only;
//! needs the `netd` and `jailer` binaries of the workspace (built by `cargo test
//! --workspace`).

mod common;
mod vm_support;

use agent_proto::{NetworkSpec, TaskSpec};
use hostagent::host::runtime::TaskRuntime;
use hostagent::vm::config::{task_id, JailIds};
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
    cfg.jail_ids = JailIds::Range {
        first: UID,
        last: UID + 9,
    };
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
    jail_id: Option<hostagent::vm::config::JailId>,
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
    let (tx, _rx) = hostagent::host::runtime::task_events(&Default::default());
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
                if let Ok(Some(st)) = state::load(&cfg.task_dir(&id)) {
                    if st.jail_id.is_some() {
                        seen.lock().unwrap().jail_id = st.jail_id;
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
    // The task's jail id (from the range) was recorded; the image root was built in the
    // jail, owned by it.
    let jail = seen.jail_id.expect("state.json recorded the jail id");
    assert!((UID..=UID + 9).contains(&jail.uid), "{jail:?}");
    let (owner, size) = seen.root_device.expect("root0.ext4 existed");
    assert_eq!(owner, jail.uid);
    assert!(size > 1 << 20, "{size}");
    // The jailer started the "vmm" as that unprivileged uid; the relay was up.
    assert_eq!(seen.vmm_uid, Some(jail.uid));
    assert!(seen.relay_socket);
    assert_released(&e, &id).await;
    let _ = &e.root;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_at_image_eni_and_jail_name_their_step_and_leave_nothing() {
    let Some(mut e) = env("fail") else { return };
    // One jail id only: every launch below gets past the jail id step, so each failed
    // launch gave its id back.
    e.cfg.jail_ids = JailIds::Range {
        first: UID + 10,
        last: UID + 10,
    };
    let (tx, _rx) = hostagent::host::runtime::task_events(&Default::default());
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
    // netd refuses the ENI (a subnet it does not have): the devices built in the jail
    // before it are removed with the jail.
    let mut bad_net = e.cfg.clone();
    bad_net.default_subnet = "no-such-subnet".into();
    let (tx, _rx) = hostagent::host::runtime::task_events(&Default::default());
    let rt_bad_net = MicroVmRuntime::new(bad_net, tx).unwrap();
    let arn = "arn:aws:ecs:local:123456789012:task/default/eni1";
    let err = rt_bad_net
        .launch(&spec(arn, &format!("oci-layout:{}:v1", e.layout.display())))
        .await
        .unwrap_err();
    assert_eq!(err.step, "eni", "{err}");
    assert_released(&e, &task_id(arn)).await;
    // A vmm the jailer cannot run (dynamically linked): fails at the jail step after the
    // ENI was made; the ENI and the jail are released.
    let dynamic = e.root.join("vmm-dynamic");
    std::fs::copy("/bin/true", &dynamic).unwrap();
    e.cfg.vmm = dynamic;
    let (tx, _rx) = hostagent::host::runtime::task_events(&Default::default());
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
    let (tx, _rx) = hostagent::host::runtime::task_events(&Default::default());
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

/// `hostagent vm-run` (the real agent binary) launching one task; killed with SIGKILL on
/// drop (an agent crash: the task's jailer, vmm and relay live on).
struct VmRun {
    child: std::process::Child,
}

impl VmRun {
    /// Starts it for `spec` with `e`'s settings and `--jail-uid-range`, and waits for its
    /// launch result line.
    fn launch(e: &Env, spec: &TaskSpec, range: &str) -> (VmRun, serde_json::Value) {
        use std::io::BufRead;
        let task_file = e.root.join(format!("{}.json", task_id(&spec.task_arn)));
        std::fs::write(&task_file, serde_json::to_vec(spec).unwrap()).unwrap();
        let c = &e.cfg;
        let cgroup_version = match c.cgroup_version {
            CgroupVersion::V1 => "1",
            CgroupVersion::V2 => "2",
        };
        let log =
            std::fs::File::create(e.root.join(format!("{}.log", task_id(&spec.task_arn)))).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hostagent"))
            .arg("vm-run")
            .arg("--task")
            .arg(&task_file)
            .args(["--run-secs", "600"])
            .arg("--state-dir")
            .arg(c.state_dir.parent().unwrap())
            .arg("--netd-socket")
            .arg(&c.netd_socket)
            .arg("--vmm-bin")
            .arg(&c.vmm)
            .arg("--jailer-bin")
            .arg(&c.jailer)
            .arg("--guest-kernel")
            .arg(&c.kernel)
            .arg("--guest-initramfs")
            .arg(&c.initramfs)
            .arg("--chroot-base")
            .arg(&c.chroot_base)
            .args(["--jail-uid-range", range])
            .arg("--allow-oci-layout")
            .args(["--cgroup-version", cgroup_version])
            .args(["--parent-cgroup", &c.parent_cgroup])
            .args(["--default-subnet", &c.default_subnet])
            .args(["--boot-timeout-secs", "60", "--start-timeout-secs", "60"])
            // The probe skips the vmm's own flags and waits for a signal.
            .arg("--vmm-arg=wait-signal")
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(180))
            .expect("vm-run printed its launch result");
        (VmRun { child }, serde_json::from_str(&line).unwrap())
    }
}

impl Drop for VmRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the jail-probe's `peer` mode with `pre` (nsenter ...) or as `id` directly; the
/// `ACTION=result` lines as a map.
fn peer(cmd: &mut std::process::Command) -> std::collections::HashMap<String, String> {
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.ends_with("end\n"),
        "probe: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(a, r)| (a.to_string(), r.to_string()))
        .collect()
}

/// On drop (a failed test), kills what the tasks' states name and cleans their jails, so
/// no vmm, relay, jail or cgroup outlives the test.
struct Reaper {
    cfg: VmRuntimeConfig,
    ids: Vec<String>,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for id in &self.ids {
            if let Ok(Some(st)) = state::load(&self.cfg.task_dir(id)) {
                for p in [st.relay, st.vmm].into_iter().flatten() {
                    p.signal(libc::SIGKILL);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        for id in &self.ids {
            let _ = std::process::Command::new(&self.cfg.jailer)
                .args(["--cleanup", "--id", id, "--exec-file", "jail-probe"])
                .arg("--chroot-base-dir")
                .arg(&self.cfg.chroot_base)
                .args(["--parent-cgroup", &self.cfg.parent_cgroup])
                .output();
        }
    }
}

fn load_state(e: &Env, id: &str) -> TaskState {
    state::load(&e.cfg.task_dir(id))
        .unwrap()
        .expect("task state")
}

/// The owner uid of a tap inside its netns.
fn tap_owner(netns_path: &str, tap: &str) -> Option<u32> {
    let ns = Path::new(netns_path).file_name()?.to_str()?;
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "cat"])
        .arg(format!("/sys/class/net/{tap}/owner"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_task_has_its_own_jail_uid_others_cannot_reach_and_keeps_it_across_a_restart() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let Some(mut e) = env("uids") else { return };
    // Two ids: two tasks fill the range.
    let (first, last) = (UID + 20, UID + 21);
    let range = format!("{first}-{last}");
    e.cfg.jail_ids = JailIds::Range { first, last };
    e.cfg.boot_timeout = Duration::from_secs(60);
    e.cfg.start_timeout = Duration::from_secs(60);
    let image = format!("oci-layout:{}:v1", e.layout.display());
    let arns = [
        "arn:aws:ecs:local:123456789012:task/default/uid-a",
        "arn:aws:ecs:local:123456789012:task/default/uid-b",
        "arn:aws:ecs:local:123456789012:task/default/uid-c",
    ];
    let ids: Vec<String> = arns.iter().map(|a| task_id(a)).collect();
    let specs: Vec<TaskSpec> = arns.iter().map(|a| spec(a, &image)).collect();
    let _reaper = Reaper {
        cfg: e.cfg.clone(),
        ids: ids.clone(),
    };
    let guest = |i: usize| {
        play_guest(
            hostagent::vm::steps::guest_socket(&e.cfg, &ids[i]),
            e.cfg.task_dir(&ids[i]),
            vec!["web".into()],
        )
    };

    // Agent 1 (a real `hostagent vm-run`) runs task A, agent 2 task B, one after the
    // other on the same state directory: B's agent finds A's id recorded and in use.
    let mut guests = vec![guest(0), guest(1)];
    let mut agents = Vec::new();
    for s in &specs[..2] {
        let (agent, first_line) = VmRun::launch(&e, s, &range);
        assert_eq!(first_line["launch"], "running", "{first_line}");
        agents.push(agent);
    }
    let st: Vec<TaskState> = ids[..2].iter().map(|id| load_state(&e, id)).collect();
    let (a, b) = (st[0].jail_id.unwrap(), st[1].jail_id.unwrap());
    assert_ne!(a.uid, b.uid, "two tasks share a jail uid");
    for id in [a, b] {
        assert!((first..=last).contains(&id.uid), "{id:?}");
        assert_eq!(id.gid, id.uid);
    }
    let (va, vb) = (st[0].vmm.unwrap(), st[1].vmm.unwrap());
    // Each "vmm" runs with its task's uid and gid only (real, effective, saved, fs).
    for (v, id) in [(va, a), (vb, b)] {
        let (uids, gids) = ids_of(v.pid).expect("vmm runs");
        assert_eq!(uids, vec![id.uid; 4], "vmm {}", v.pid);
        assert_eq!(gids, vec![id.gid; 4], "vmm {}", v.pid);
    }
    // The task's tap, image root and scratch device belong to its uid.
    let client = e.netd.client();
    for (i, id) in [a, b].iter().enumerate() {
        let t = client.task(&ids[i]).await.unwrap();
        assert_eq!(
            tap_owner(&t.netns_path, &t.enis[0].tap),
            Some(id.uid),
            "{t:?}"
        );
        for f in ["root0.ext4", "scratch.ext4"] {
            let m = std::fs::metadata(e.cfg.jail_root(&ids[i]).join(f)).unwrap();
            assert_eq!((m.uid(), m.gid()), (id.uid, id.gid), "{f}");
        }
    }

    // A's vmm broke out of its PID namespace but not its jail (mount and network
    // namespaces, A's uid; the probe is the jail's /jail-probe): it sees B's vmm but may
    // not signal it; its own vmm it may.
    let r = peer(
        std::process::Command::new("nsenter")
            .arg("-t")
            .arg(va.pid.to_string())
            .args([
                "-m",
                "-n",
                "-S",
                &a.uid.to_string(),
                "-G",
                &a.gid.to_string(),
            ])
            .args(["/jail-probe", "peer"])
            .arg(format!("kill:{}", vb.pid))
            .arg(format!("kill:{}", va.pid)),
    );
    assert_eq!(r[&format!("kill:{}", vb.pid)], "EPERM", "{r:?}");
    assert_eq!(r[&format!("kill:{}", va.pid)], "ok", "{r:?}");
    // Inside A's jail for real (its PID namespace too): B's vmm is not even visible.
    let r = peer(
        std::process::Command::new("nsenter")
            .arg("-t")
            .arg(va.pid.to_string())
            .args([
                "-m",
                "-n",
                "-p",
                "-S",
                &a.uid.to_string(),
                "-G",
                &a.gid.to_string(),
            ])
            .args(["/jail-probe", "peer"])
            .arg(format!("kill:{}", vb.pid))
            .arg("kill:1"),
    );
    assert_eq!(r[&format!("kill:{}", vb.pid)], "ESRCH", "{r:?}");
    assert_eq!(r["kill:1"], "ok", "{r:?}");
    // Out of every namespace, as either task's uid: the other task's vmm, relay (root)
    // and devices are out of reach; its own are not.
    for (me, my_vmm, my_id, other_vmm, other_id, other_relay) in [
        (a, va, &ids[0], vb, &ids[1], st[1].relay.unwrap()),
        (b, vb, &ids[1], va, &ids[0], st[0].relay.unwrap()),
    ] {
        let mine = e.cfg.jail_root(my_id);
        let theirs = e.cfg.jail_root(other_id);
        let acts = [
            format!("kill:{}", other_vmm.pid),
            format!("kill:{}", other_relay.pid),
            format!("read:{}", theirs.join("root0.ext4").display()),
            format!("write:{}", theirs.join("scratch.ext4").display()),
            format!("kill:{}", my_vmm.pid),
            format!("read:{}", mine.join("root0.ext4").display()),
            format!("write:{}", mine.join("scratch.ext4").display()),
        ];
        let r = peer(
            std::process::Command::new(probe())
                .arg("peer")
                .args(&acts)
                .uid(me.uid)
                .gid(me.gid),
        );
        let got: Vec<&str> = acts.iter().map(|a| r[a].as_str()).collect();
        assert_eq!(
            got,
            ["EPERM", "EPERM", "EACCES", "EACCES", "ok", "ok", "ok"],
            "as uid {}: {acts:?}",
            me.uid
        );
    }

    // Both agents die; the tasks live on.
    drop(agents);
    assert!(va.alive() && vb.alive());
    assert!(st[0].relay.unwrap().alive() && st[1].relay.unwrap().alive());

    // The restarted agent rebuilds its ids from the task states: the range is full, a
    // third task is refused before anything is made.
    let (tx, _rx) = hostagent::host::runtime::task_events(&Default::default());
    let rt = MicroVmRuntime::new(e.cfg.clone(), tx).unwrap();
    let err = rt.launch(&specs[2]).await.unwrap_err();
    assert_eq!(err.step, "launch", "{err}");
    assert!(
        err.reason.contains(&format!(
            "no free jail uid: all 2 ids of --jail-uid-range {range}"
        )),
        "{err}"
    );
    assert_released(&e, &ids[2]).await;
    // Both tasks are re-adopted with the uids they had.
    for (i, s) in specs[..2].iter().enumerate() {
        let l = rt.adopt(s).await.unwrap_or_else(|e| panic!("adopt: {e}"));
        assert_eq!(l.containers[0].last_status, agent_proto::Status::Running);
        assert_eq!(load_state(&e, &ids[i]).jail_id, st[i].jail_id);
    }
    assert_eq!(ids_of(va.pid).unwrap().0[0], a.uid);

    // A stops: once everything of it is gone its uid is free, and the next task gets it
    // (the only free one), never B's.
    let finals = rt.stop(&specs[0], "test stop").await;
    assert_eq!(finals[0].exit_code, Some(0), "{finals:?}");
    assert_released(&e, &ids[0]).await;
    assert!(!va.alive());
    guests.push(guest(2));
    rt.launch(&specs[2])
        .await
        .unwrap_or_else(|e| panic!("launch after release: {e}"));
    let sc = load_state(&e, &ids[2]);
    assert_eq!(sc.jail_id, Some(a), "the released uid is reused");
    assert_eq!(ids_of(sc.vmm.unwrap().pid).unwrap().0, vec![a.uid; 4]);
    for i in [1, 2] {
        rt.stop(&specs[i], "test stop").await;
        assert_released(&e, &ids[i]).await;
    }
    for g in guests.drain(..) {
        g.join().unwrap().unwrap();
    }
}
