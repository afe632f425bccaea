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
#[path = "spec_tests.rs"]
mod tests;
