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
