//! Spec parsing and validation.

use guest_proto::*;

const GOOD: &str = r#"{
  "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/c/abc",
  "hostname": "ip-10-0-1-5",
  "interfaces": [{"mac": "02:00:0a:00:01:05", "addresses": ["10.0.1.5/24"], "gateway": "10.0.1.1",
                  "routes": [{"destination": "169.254.170.2/32"}]}],
  "dns": {"nameservers": ["10.0.0.2"], "search": ["ec2.internal"]},
  "entropySeed": "00ff10",
  "volumes": [{"name": "shared"}],
  "containers": [
    {"name": "web", "rootDevice": "/dev/vdb", "entryPoint": ["httpd"], "command": ["-f"],
     "environment": {"A": "1"}, "user": "nobody", "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
     "healthCheck": {"command": ["CMD-SHELL", "wget -q -O- localhost"], "interval": 5, "retries": 2},
     "mountPoints": [{"sourceVolume": "shared", "containerPath": "/www", "readOnly": true}],
     "cpu": 256, "memoryReservation": 128, "stopTimeout": 10},
    {"name": "writer", "rootDevice": "/dev/vdc", "command": ["sh", "-c", "date > /data/index.html"], "essential": false,
     "dependsOn": [{"containerName": "web", "condition": "HEALTHY"}],
     "mountPoints": [{"sourceVolume": "shared", "containerPath": "/data"}]}
  ]
}"#;

fn good() -> TaskSpec {
    serde_json::from_str(GOOD).unwrap()
}

type Mutation = Box<dyn Fn(&mut TaskSpec)>;

fn invalid(t: &TaskSpec) -> String {
    validate_task(t).expect_err("should be rejected").0
}

#[test]
fn parses_and_validates_a_full_spec() {
    let t = good();
    validate_task(&t).unwrap();
    assert!(t.containers[0].essential, "essential defaults to true");
    assert!(!t.containers[1].essential);
    assert_eq!(t.containers[1].depends_on[0].condition, Condition::Healthy);
    assert_eq!(
        t.containers[0]
            .health_check
            .as_ref()
            .unwrap()
            .timeout_secs(),
        5
    );
    assert_eq!(t.containers[0].mount_points[0].container_path, "/www");
    // round trip
    let again: TaskSpec = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
    assert_eq!(again, t);
}

#[test]
fn unknown_fields_and_conditions_are_refused_by_the_parser() {
    assert!(serde_json::from_str::<TaskSpec>(&GOOD.replace("\"cpu\"", "\"cpuz\"")).is_err());
    assert!(serde_json::from_str::<TaskSpec>(&GOOD.replace("HEALTHY", "READY")).is_err());
}

#[test]
fn rejects_bad_references_and_cycles() {
    let mut t = good();
    t.containers[1].depends_on[0].container_name = "nope".into();
    assert!(invalid(&t).contains("unknown container"));

    let mut t = good();
    t.containers[0].depends_on.push(Dependency {
        container_name: "writer".into(),
        condition: Condition::Start,
    });
    assert!(invalid(&t).contains("cycle"));

    let mut t = good();
    t.containers[0].health_check = None;
    assert!(invalid(&t).contains("HEALTHY"));

    let mut t = good();
    t.containers[1].mount_points[0].source_volume = "other".into();
    assert!(invalid(&t).contains("undeclared volume"));

    let mut t = good();
    t.containers[1].name = "web".into();
    assert!(invalid(&t).contains("duplicate"));
}

#[test]
fn rejects_bad_values() {
    let cases: Vec<(&str, Mutation)> = vec![
        ("essential", Box::new(|t| t.containers[0].essential = false)),
        ("containers", Box::new(|t| t.containers.clear())),
        (
            "stopTimeout",
            Box::new(|t| t.containers[0].stop_timeout = Some(121)),
        ),
        (
            "interval",
            Box::new(|t| t.containers[0].health_check.as_mut().unwrap().interval = Some(1)),
        ),
        (
            "healthCheck command",
            Box::new(|t| {
                t.containers[0].health_check.as_mut().unwrap().command = vec!["CMD".into()]
            }),
        ),
        (
            "ulimit",
            Box::new(|t| t.containers[0].ulimits[0].name = "bogus".into()),
        ),
        (
            "soft limit",
            Box::new(|t| t.containers[0].ulimits[0].soft_limit = 99999),
        ),
        (
            "CIDR",
            Box::new(|t| t.interfaces[0].addresses[0] = "10.0.1.5".into()),
        ),
        (
            "prefix",
            Box::new(|t| t.interfaces[0].addresses[0] = "10.0.1.5/33".into()),
        ),
        (
            "MAC",
            Box::new(|t| t.interfaces[0].mac = Some("02:00:0a".into())),
        ),
        (
            "gateway",
            Box::new(|t| t.interfaces[0].gateway = Some("x".into())),
        ),
        (
            "nameserver",
            Box::new(|t| t.dns.nameservers[0] = "dns".into()),
        ),
        ("hex", Box::new(|t| t.entropy_seed = Some("xyz".into()))),
        ("hostname", Box::new(|t| t.hostname = Some("a b".into()))),
        (
            "container name",
            Box::new(|t| t.containers[0].name = "we b".into()),
        ),
        (
            "rootDevice",
            Box::new(|t| t.containers[0].root_device = "vdb".into()),
        ),
        (
            "neither entryPoint nor command",
            Box::new(|t| {
                t.containers[0].entry_point.clear();
                t.containers[0].command.clear();
            }),
        ),
        (
            "containerPath",
            Box::new(|t| t.containers[0].mount_points[0].container_path = "/a/../..".into()),
        ),
        (
            "environment",
            Box::new(|t| {
                t.containers[0].environment.insert("A=B".into(), "x".into());
            }),
        ),
        (
            "workingDirectory",
            Box::new(|t| t.containers[0].working_directory = Some("rel".into())),
        ),
        (
            "memoryReservation",
            Box::new(|t| t.containers[0].memory = Some(64)),
        ),
    ];
    for (want, f) in cases {
        let mut t = good();
        f(&mut t);
        let e = invalid(&t);
        assert!(
            e.contains(want),
            "expected an error about {want:?}, got {e:?}"
        );
    }
}

#[test]
fn helpers_parse() {
    assert_eq!(
        validate::parse_mac("02:00:0A:00:01:05").unwrap(),
        [2, 0, 10, 0, 1, 5]
    );
    assert_eq!(validate::parse_hex("00ff10").unwrap(), vec![0, 255, 16]);
    let (a, p) = validate::parse_cidr("fd00::5/64").unwrap();
    assert_eq!((a.to_string(), p), ("fd00::5".to_string(), 64));
}
