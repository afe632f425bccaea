//! From the control plane's task to what the microVM gets: the guest init's task spec
//! (guest-proto) and the vmm's Firecracker config file, with every path inside the jail.

use crate::image::{ContainerOverrides, ImageConfig, ProcessSpec};
use agent_proto::TaskSpec;
use netd::model::Eni;
use serde_json::{json, Value};

/// Kernel command line every task VM gets (guest-init: `reboot=k` turns its final reboot
/// into a vmm exit through the i8042 reset line; `panic=1` ends the VM if PID 1 dies).
pub const BOOT_ARGS: &str =
    "console=ttyS0 reboot=k panic=1 pci=off i8042.noaux i8042.nomux i8042.dumbkbd";

/// Guest CID of every task VM (each VM has its own vsock device; CIDs need not differ).
pub const GUEST_CID: u32 = 3;

/// Paths inside the jail (the vmm's view after pivot_root).
pub mod jail_paths {
    /// The Firecracker config file.
    pub const CONFIG: &str = "/vm.json";
    /// The guest kernel.
    pub const KERNEL: &str = "/vmlinux";
    /// The guest init initramfs.
    pub const INITRAMFS: &str = "/initrd";
    /// The vsock device's Unix socket (in `/run`, the only directory the vmm may write).
    pub const VSOCK: &str = "/run/v.sock";
    /// Scratch device (writable layers).
    pub const SCRATCH: &str = "/scratch.ext4";
    /// Volume device.
    pub const VOLUME: &str = "/volume.ext4";

    /// The image root of container `i`.
    pub fn root(i: usize) -> String {
        format!("/root{i}.ext4")
    }
}

/// vCPUs of a task: one per 1024 CPU units, rounded up, at least one.
pub fn vcpus(cpu_units: u32) -> u32 {
    cpu_units.div_ceil(1024).max(1)
}

/// The guest's name of the `i`-th drive (`/dev/vda`, `/dev/vdb`, ...): drives are attached
/// in config order, one virtio-mmio device each, probed in address order.
pub fn guest_drive(i: usize) -> String {
    let letter = char::from(b'a' + u8::try_from(i % 26).unwrap_or(0));
    if i < 26 {
        format!("/dev/vd{letter}")
    } else {
        let first = char::from(b'a' + u8::try_from(i / 26 - 1).unwrap_or(0));
        format!("/dev/vd{first}{letter}")
    }
}

/// The final process of one container: the image config merged with the task's overrides.
pub fn process_of(c: &agent_proto::ContainerSpec, image: &ImageConfig) -> ProcessSpec {
    let env: Vec<(String, String)> = c
        .environment
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect();
    image.merge(&ContainerOverrides {
        entry_point: &c.entry_point,
        command: &c.command,
        environment: &env,
        working_directory: c.working_directory.as_deref(),
        user: c.user.as_deref(),
    })
}

/// Extra inputs of the guest spec that are not in the task.
#[derive(Debug, Clone)]
pub struct GuestInputs {
    /// Host wall clock, ms since the Unix epoch.
    pub host_time_ms: u64,
    /// Hex entropy for the guest's pool.
    pub entropy_seed: String,
}

/// The guest init's task: containers on `/dev/vda..` in task order, then the scratch and
/// the volume device; the ENIs as static interfaces (found by MAC); DNS from netd.
pub fn guest_task(
    spec: &TaskSpec,
    procs: &[ProcessSpec],
    enis: &[Eni],
    extra: &GuestInputs,
) -> guest_proto::TaskSpec {
    let n = spec.containers.len();
    let containers = spec
        .containers
        .iter()
        .zip(procs)
        .enumerate()
        .map(|(i, (c, p))| guest_proto::ContainerSpec {
            name: c.name.clone(),
            root_device: guest_drive(i),
            root_fs_type: Some("ext4".into()),
            entry_point: p.entry_point.clone(),
            command: p.command.clone(),
            environment: p.environment.clone(),
            working_directory: p.working_directory.clone(),
            user: p.user.clone(),
            essential: c.essential,
            stop_timeout: (c.stop_timeout_secs > 0)
                .then_some(c.stop_timeout_secs.min(guest_proto::MAX_STOP_TIMEOUT_SECS)),
            cpu: c.cpu,
            memory: c.memory.map(u64::from),
            memory_reservation: c.memory_reservation.map(u64::from),
            ulimits: c.ulimits.clone(),
            depends_on: c.depends_on.clone(),
            health_check: c.health_check.clone(),
            mount_points: c.mount_points.clone(),
            ..Default::default()
        })
        .collect();
    let interfaces = enis
        .iter()
        .map(|e| guest_proto::NetInterface {
            mac: Some(e.mac.clone()),
            name: None,
            addresses: vec![format!("{}/{}", e.ip, e.prefix_len)],
            // Only the primary ENI carries the default route.
            gateway: (e.index == 0).then(|| e.gateway.to_string()),
            routes: vec![],
            mtu: None,
        })
        .collect();
    let mut nameservers: Vec<String> = Vec::new();
    for d in enis.iter().flat_map(|e| e.dns.iter()) {
        let d = d.to_string();
        if !nameservers.contains(&d) {
            nameservers.push(d);
        }
    }
    guest_proto::TaskSpec {
        task_arn: spec.task_arn.clone(),
        hostname: enis
            .first()
            .map(|e| format!("ip-{}", e.ip.to_string().replace('.', "-"))),
        interfaces,
        dns: guest_proto::Dns {
            nameservers,
            search: vec![],
        },
        host_time_ms: Some(extra.host_time_ms),
        entropy_seed: Some(extra.entropy_seed.clone()),
        scratch_device: Some(guest_drive(n)),
        volume_device: Some(guest_drive(n + 1)),
        volumes: spec
            .volumes
            .iter()
            .map(|name| guest_proto::Volume { name: name.clone() })
            .collect(),
        containers,
    }
}

/// The vmm's `--config-file` (Firecracker format). `taps`: (tap name, guest MAC) per ENI.
pub fn vm_config(spec: &TaskSpec, taps: &[(String, String)], extra_boot_args: &str) -> Value {
    let mut drives: Vec<Value> = (0..spec.containers.len())
        .map(|i| {
            json!({"drive_id": format!("root{i}"), "path_on_host": jail_paths::root(i),
                   "is_root_device": false, "is_read_only": true})
        })
        .collect();
    drives.push(
        json!({"drive_id": "scratch", "path_on_host": jail_paths::SCRATCH,
        "is_root_device": false, "is_read_only": false}),
    );
    drives.push(
        json!({"drive_id": "volume", "path_on_host": jail_paths::VOLUME,
        "is_root_device": false, "is_read_only": false}),
    );
    let nets: Vec<Value> = taps
        .iter()
        .enumerate()
        .map(|(i, (tap, mac))| json!({"iface_id": format!("eth{i}"), "host_dev_name": tap, "guest_mac": mac}))
        .collect();
    let mut args = BOOT_ARGS.to_string();
    if !extra_boot_args.trim().is_empty() {
        args.push(' ');
        args.push_str(extra_boot_args.trim());
    }
    json!({
        "boot-source": {"kernel_image_path": jail_paths::KERNEL, "initrd_path": jail_paths::INITRAMFS,
                        "boot_args": args},
        "machine-config": {"vcpu_count": vcpus(spec.cpu), "mem_size_mib": spec.memory, "smt": false},
        "drives": drives,
        "network-interfaces": nets,
        "vsock": {"guest_cid": GUEST_CID, "uds_path": jail_paths::VSOCK},
        "entropy": {}
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_proto::{ContainerSpec, NetworkSpec};

    pub(crate) fn container(name: &str, essential: bool) -> ContainerSpec {
        // From JSON, as the control plane sends it (fields other components add later
        // keep their defaults).
        serde_json::from_value(serde_json::json!({
            "name": name,
            "image": "127.0.0.1:5000/busybox:v1",
            "cpu": 0,
            "memory": 128,
            "essential": essential,
            "command": ["httpd", "-f"],
            "environment": [{"name": "A", "value": "task"}],
            "stopTimeoutSecs": 300
        }))
        .expect("a container spec")
    }

    pub(crate) fn task(cpu: u32, memory: u32, containers: Vec<ContainerSpec>) -> TaskSpec {
        TaskSpec {
            task_arn: "arn:aws:ecs:us-east-1:123456789012:task/default/abc".into(),
            account_id: "123456789012".into(),
            task_definition_arn: "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1".into(),
            cpu,
            memory,
            containers,
            network: NetworkSpec {
                subnets: vec!["service".into()],
                security_groups: vec!["web".into()],
                assign_public_ip: false,
            },
            volumes: vec![],
        }
    }

    fn eni(index: u8, ip: [u8; 4]) -> Eni {
        Eni {
            id: format!("eni-{index}"),
            index,
            subnet: "service".into(),
            tap: format!("tap{index}"),
            mac: format!("02:00:00:00:00:0{index}"),
            ip: ip.into(),
            prefix_len: 24,
            gateway: [ip[0], ip[1], ip[2], 1].into(),
            dns: vec![[10, 0, 0, 2].into()],
            security_groups: vec![],
            public_ip: None,
            host_if: format!("nd0000000{index}"),
        }
    }

    #[test]
    fn vcpus_round_up() {
        assert_eq!(vcpus(256), 1);
        assert_eq!(vcpus(1024), 1);
        assert_eq!(vcpus(1025), 2);
        assert_eq!(vcpus(2048), 2);
        assert_eq!(vcpus(4096), 4);
        assert_eq!(vcpus(0), 1);
    }

    #[test]
    fn drive_names() {
        assert_eq!(guest_drive(0), "/dev/vda");
        assert_eq!(guest_drive(11), "/dev/vdl");
        assert_eq!(guest_drive(26), "/dev/vdaa");
    }

    #[test]
    fn guest_task_has_devices_interfaces_and_merged_processes() {
        let t = task(
            512,
            1024,
            vec![container("web", true), container("side", false)],
        );
        let image = ImageConfig {
            env: vec!["PATH=/bin".into(), "A=image".into()],
            entrypoint: vec![],
            cmd: vec!["sh".into()],
            working_dir: "/www".into(),
            user: "nobody".into(),
        };
        let procs: Vec<ProcessSpec> = t.containers.iter().map(|c| process_of(c, &image)).collect();
        let enis = [eni(0, [10, 0, 0, 5]), eni(1, [10, 1, 0, 5])];
        let g = guest_task(
            &t,
            &procs,
            &enis,
            &GuestInputs {
                host_time_ms: 42,
                entropy_seed: "abcd".into(),
            },
        );
        guest_proto::validate_task(&g).expect("valid for the guest init");
        assert_eq!(g.containers[0].root_device, "/dev/vda");
        assert_eq!(g.containers[1].root_device, "/dev/vdb");
        assert_eq!(g.scratch_device.as_deref(), Some("/dev/vdc"));
        assert_eq!(g.volume_device.as_deref(), Some("/dev/vdd"));
        assert_eq!(g.containers[0].command, vec!["httpd", "-f"]);
        assert_eq!(g.containers[0].environment["A"], "task");
        assert_eq!(g.containers[0].environment["PATH"], "/bin");
        assert_eq!(g.containers[0].working_directory.as_deref(), Some("/www"));
        assert_eq!(g.containers[0].user.as_deref(), Some("nobody"));
        assert_eq!(g.containers[0].stop_timeout, Some(120), "capped at 120 s");
        assert!(!g.containers[1].essential);
        assert_eq!(g.containers[0].memory, Some(128));
        assert_eq!(g.interfaces[0].addresses, vec!["10.0.0.5/24"]);
        assert_eq!(g.interfaces[0].gateway.as_deref(), Some("10.0.0.1"));
        assert_eq!(g.interfaces[1].gateway, None, "one default route");
        assert_eq!(g.interfaces[1].mac.as_deref(), Some("02:00:00:00:00:01"));
        assert_eq!(g.dns.nameservers, vec!["10.0.0.2"], "deduplicated");
        assert_eq!(g.hostname.as_deref(), Some("ip-10-0-0-5"));
        assert_eq!(g.host_time_ms, Some(42));
    }

    #[test]
    fn runtime_fields_and_volumes_reach_the_guest() {
        // As the control plane sends them (ECS field names).
        let web: ContainerSpec = serde_json::from_value(serde_json::json!({
            "name": "web", "image": "busybox", "cpu": 0, "essential": true,
            "command": ["httpd", "-f"], "stopTimeoutSecs": 10,
            "healthCheck": {"command": ["CMD-SHELL", "wget -q http://127.0.0.1/"], "interval": 5},
            "mountPoints": [{"sourceVolume": "shared", "containerPath": "/data", "readOnly": true}],
            "workingDirectory": "/srv", "user": "1000:1000",
            "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}]
        }))
        .expect("a container spec");
        let mut side = container("side", false);
        side.depends_on = vec![agent_proto::Dependency {
            container_name: "web".into(),
            condition: agent_proto::Condition::Healthy,
        }];
        let mut t = task(512, 1024, vec![web, side]);
        t.volumes = vec!["shared".into()];
        let image = ImageConfig {
            env: vec![],
            entrypoint: vec![],
            cmd: vec!["sh".into()],
            working_dir: "/".into(),
            user: "root".into(),
        };
        let procs: Vec<ProcessSpec> = t.containers.iter().map(|c| process_of(c, &image)).collect();
        let g = guest_task(
            &t,
            &procs,
            &[eni(0, [10, 0, 0, 5])],
            &GuestInputs {
                host_time_ms: 1,
                entropy_seed: "ab".into(),
            },
        );
        guest_proto::validate_task(&g).expect("valid for the guest init");
        assert_eq!(
            g.volumes,
            vec![guest_proto::Volume {
                name: "shared".into()
            }]
        );
        let w = &g.containers[0];
        assert_eq!(
            w.working_directory.as_deref(),
            Some("/srv"),
            "task's, not the image's"
        );
        assert_eq!(w.user.as_deref(), Some("1000:1000"));
        assert_eq!(w.health_check.as_ref().map(|h| h.interval_secs()), Some(5));
        assert_eq!(w.mount_points[0].container_path, "/data");
        assert!(w.mount_points[0].read_only);
        assert_eq!(w.ulimits[0].hard_limit, 4096);
        assert_eq!(g.containers[1].depends_on[0].container_name, "web");
        assert_eq!(
            g.containers[1].working_directory.as_deref(),
            Some("/"),
            "image's"
        );
    }

    #[test]
    fn vm_config_sizes_and_jail_paths() {
        let t = task(2048, 4096, vec![container("a", true), container("b", true)]);
        let c = vm_config(&t, &[("tap0".into(), "02:00:00:00:00:00".into())], "quiet");
        assert_eq!(c["machine-config"]["vcpu_count"], 2);
        assert_eq!(c["machine-config"]["mem_size_mib"], 4096);
        assert_eq!(c["boot-source"]["kernel_image_path"], "/vmlinux");
        assert_eq!(c["boot-source"]["initrd_path"], "/initrd");
        let args = c["boot-source"]["boot_args"].as_str().unwrap();
        assert!(args.starts_with("console=ttyS0 reboot=k panic=1"), "{args}");
        assert!(args.ends_with(" quiet"), "{args}");
        let drives = c["drives"].as_array().unwrap();
        assert_eq!(drives.len(), 4);
        assert_eq!(drives[0]["path_on_host"], "/root0.ext4");
        assert_eq!(drives[0]["is_read_only"], true);
        assert_eq!(drives[2]["path_on_host"], "/scratch.ext4");
        assert_eq!(drives[3]["is_read_only"], false);
        assert_eq!(c["network-interfaces"][0]["host_dev_name"], "tap0");
        assert_eq!(c["vsock"]["uds_path"], "/run/v.sock");
    }
}
