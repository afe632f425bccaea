//! Security groups, NAT and dual-homing against the real kernel (netns, veth, tap, nftables).
//! Every address used here exists only inside this test's own namespaces.

mod common;

use common::*;
use std::net::Ipv4Addr;

#[test]
fn default_deny_and_group_port_rules() {
    let (env, rt, c) = started(&["svc"]);
    let (srv, cli, other, bare) = rt.block_on(async {
        put_egress_all(&c, "client").await;
        put_egress_all(&c, "other").await;
        put_ingress(&c, "web", vec![tcp_from_group((8080, 8080), "client")]).await;
        let srv = create(&c, "srv", vec![eni("svc", &["web"])]).await;
        let cli = create(&c, "cli", vec![eni("svc", &["client"])]).await;
        let other = create(&c, "oth", vec![eni("svc", &["other"])]).await;
        let bare = create(&c, "bare", vec![eni("svc", &[])]).await;
        (srv, cli, other, bare)
    });
    let (gs, gc, go, gb) = (
        env.guest(&srv),
        env.guest(&cli),
        env.guest(&other),
        env.guest(&bare),
    );
    let _servers: Vec<_> = [&gs, &gc, &go, &gb]
        .iter()
        .flat_map(|g| [serve(g, 8080), serve(g, 8081)])
        .collect();

    // Each guest reaches its gateway (the host) and nothing else by default.
    assert!(
        ping_ok(&gc, cli.enis[0].gateway),
        "guest cannot ping its gateway"
    );
    assert!(
        !ping_ok(&gc, ip(&other, 0)),
        "task-to-task ping allowed by default"
    );
    assert!(
        !tcp_ok(&gc, ip(&bare, 0), 8080),
        "task with no rules reachable"
    );
    assert!(
        !tcp_ok(&gb, ip(&cli, 0), 8080),
        "task with no egress rule sent traffic"
    );
    assert!(
        !tcp_ok(&gc, ip(&other, 0), 8080),
        "no ingress rule, yet reachable"
    );

    // TCP 8080 from group `client` admits exactly that.
    assert!(
        tcp_ok(&gc, ip(&srv, 0), 8080),
        "allowed 8080 from client blocked"
    );
    assert!(!tcp_ok(&gc, ip(&srv, 0), 8081), "8081 reachable");
    assert!(
        !tcp_ok(&go, ip(&srv, 0), 8080),
        "8080 reachable from another group"
    );
    assert!(!ping_ok(&gc, ip(&srv, 0)), "icmp reachable");

    rt.block_on(async {
        // Live group change of a task: `oth` joins `client`, then leaves it again.
        c.set_groups("oth", 0, &["other", "client"]).await.unwrap();
    });
    assert!(
        tcp_ok(&go, ip(&srv, 0), 8080),
        "live group update not applied"
    );
    rt.block_on(async { c.set_groups("oth", 0, &["other"]).await.unwrap() });
    assert!(
        !tcp_ok(&go, ip(&srv, 0), 8080),
        "live group removal not applied"
    );

    // Live rule change of a group: web now admits 8081 only.
    rt.block_on(put_ingress(
        &c,
        "web",
        vec![tcp_from_group((8081, 8081), "client")],
    ));
    assert!(tcp_ok(&gc, ip(&srv, 0), 8081), "updated rule not applied");
    assert!(!tcp_ok(&gc, ip(&srv, 0), 8080), "old rule still applied");
    // Anti-spoofing: each ENI chain drops any source address but its own.
    let rules = env.ruleset();
    assert!(
        rules.contains(&format!("ip saddr != {} drop", ip(&other, 0))),
        "no anti-spoof rule:\n{rules}"
    );
}

#[test]
fn egress_rules_hold() {
    let (env, rt, c) = started(&["svc"]);
    let (src, dst) = rt.block_on(async {
        put_ingress(&c, "open", vec![tcp_from_cidr((9000, 9001), "0.0.0.0/0")]).await;
        put(&c, "dst", spec(vec![], vec![])).await;
        let eg = vec![tcp_from_group((9000, 9000), "dst")];
        put(&c, "narrow", spec(vec![], eg)).await;
        let dst = create(&c, "dst", vec![eni("svc", &["open", "dst"])]).await;
        let src = create(&c, "src", vec![eni("svc", &["narrow"])]).await;
        (src, dst)
    });
    let (gs, gd) = (env.guest(&src), env.guest(&dst));
    let _s = [serve(&gd, 9000), serve(&gd, 9001)];
    assert!(
        tcp_ok(&gs, ip(&dst, 0), 9000),
        "egress 9000 to group dst blocked"
    );
    assert!(
        !tcp_ok(&gs, ip(&dst, 0), 9001),
        "egress rule ignored: 9001 passed"
    );
    // dst's ingress is open but it has no egress rule: it cannot initiate anything.
    let _t = serve(&gs, 9000);
    assert!(
        !tcp_ok(&gd, ip(&src, 0), 9000),
        "task without egress rules initiated traffic"
    );
    // Egress by CIDR: allow the whole subnet on 9001.
    rt.block_on(async {
        let cidr = format!("{}.0/24", env.subnets[0].1);
        let eg = vec![tcp_from_cidr((9001, 9001), &cidr)];
        put(&c, "narrow", spec(vec![], eg)).await;
    });
    assert!(
        tcp_ok(&gs, ip(&dst, 0), 9001),
        "cidr egress rule not applied"
    );
    assert!(
        !tcp_ok(&gs, ip(&dst, 0), 9000),
        "replaced egress rule still applied"
    );
}

#[test]
fn dual_homed_task_reaches_both_subnets() {
    let (env, rt, c) = started(&["svc", "cust"]);
    let (dual, pa, pb) = rt.block_on(async {
        put_egress_all(&c, "out").await;
        put_ingress(&c, "in", vec![tcp_from_cidr((7000, 7000), "10.0.0.0/8")]).await;
        let mut r = req(vec![eni("svc", &["out"]), eni("cust", &["out"])]);
        r.tap_uid = Some(1234);
        r.tap_gid = Some(4321);
        let dual = c.create_task("dual", &r).await.unwrap();
        let pa = create(&c, "pa", vec![eni("svc", &["in"])]).await;
        let pb = create(&c, "pb", vec![eni("cust", &["in"])]).await;
        (dual, pa, pb)
    });
    assert_eq!(dual.enis.len(), 2);
    assert_ne!(dual.enis[0].subnet, dual.enis[1].subnet);
    assert_eq!(dual.enis[1].tap, "tap1");
    let links = sh_out(&["ip", "-n", &dual.netns, "-o", "link"]);
    assert!(links.contains("tap0") && links.contains("tap1"), "{links}");
    // The taps are what a jailed vmm (uid 1234) opens: owned by it, TAP|NO_PI|VNET_HDR|PERSIST.
    for tap in ["tap0", "tap1"] {
        let sys = |f: &str| {
            sh_out(&[
                "ip",
                "netns",
                "exec",
                &dual.netns,
                "cat",
                &format!("/sys/class/net/{tap}/{f}"),
            ])
        };
        assert_eq!(sys("owner").trim(), "1234");
        assert_eq!(sys("group").trim(), "4321");
        assert_eq!(sys("tun_flags").trim(), "0x5802");
    }
    let (gd, ga, gb) = (env.guest(&dual), env.guest(&pa), env.guest(&pb));
    let _s = [serve(&ga, 7000), serve(&gb, 7000)];
    assert!(tcp_ok(&gd, ip(&pa, 0), 7000), "primary subnet unreachable");
    assert!(
        tcp_ok(&gd, ip(&pb, 0), 7000),
        "secondary subnet unreachable"
    );
    // Both peers see the dual-homed task's address on their own subnet (no NAT between).
    let _d = serve(&gd, 7000);
    assert!(
        !tcp_ok(&ga, ip(&dual, 0), 7000),
        "dual task has no ingress rule, yet reachable"
    );
}

#[test]
fn uplink_masquerade_public_ip_and_host_policy() {
    // An "outside" namespace plays the uplink's far side; its addresses are a 10.x range
    // private to this test, reachable only through the test's veth.
    let mut env = Env::new(&["svc"], 24);
    let outer = format!("{}.250", env.subnets[0].1.rsplit_once('.').unwrap().0);
    let public = format!("{}.251.10", env.subnets[0].1.rsplit_once('.').unwrap().0);
    let up = format!("{}uplnk", env.if_prefix);
    let out_ns = format!("{}outside", env.guest_prefix);
    sh(&["ip", "netns", "add", &out_ns]);
    sh(&[
        "ip", "link", "add", &up, "type", "veth", "peer", "name", "wan0", "netns", &out_ns,
    ]);
    sh(&["ip", "addr", "add", &format!("{outer}.1/24"), "dev", &up]);
    sh(&["ip", "link", "set", &up, "up"]);
    sh(&[
        "ip",
        "-n",
        &out_ns,
        "addr",
        "add",
        &format!("{outer}.2/24"),
        "dev",
        "wan0",
    ]);
    sh(&["ip", "-n", &out_ns, "link", "set", "wan0", "up"]);
    sh(&["ip", "-n", &out_ns, "link", "set", "lo", "up"]);
    sh(&[
        "ip",
        "-n",
        &out_ns,
        "route",
        "add",
        &format!("{public}/32"),
        "via",
        &format!("{outer}.1"),
    ]);
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text = text.replacen("[[subnet]]", &format!("uplink = \"{up}\"\n[[subnet]]"), 1);
    text += &format!(
        "[host_input]\ninterfaces = [\"{up}\"]\nallow = [{{ protocol = \"tcp\", from_port = 23790, cidr = \"{outer}.0/24\" }}]\n"
    );
    std::fs::write(&env.config, text).unwrap();
    env.start();
    let rt = rt();
    let c = env.client();
    let t = rt.block_on(async {
        let inn = vec![tcp_from_cidr((80, 80), &format!("{outer}.0/24"))];
        put(&c, "pub", spec(inn, egress_all())).await;
        let mut r = req(vec![eni("svc", &["pub"])]);
        r.enis[0].public_ip = Some(public.parse().unwrap());
        let p = create(&c, "priv", vec![eni("svc", &["pub"])]).await;
        (c.create_task("web", &r).await.unwrap(), p)
    });
    let (t, private) = t;
    let g = env.guest(&t);
    let gp = env.guest(&private);
    let _srv = serve(&g, 80);
    let _out = serve(&out_ns, 8000);
    // Outbound: masqueraded to the uplink address (the outside has no route to the subnet).
    assert!(
        tcp_ok(&g, format!("{outer}.2").parse().unwrap(), 8000),
        "outbound through the uplink failed"
    );
    // A task without a public IP goes out masqueraded behind the uplink's address.
    assert!(
        tcp_ok(&gp, format!("{outer}.2").parse().unwrap(), 8000),
        "masquerade failed"
    );
    let masq = format!("ip saddr {}.0/24 masquerade", env.subnets[0].1);
    assert!(env.ruleset().contains(&masq), "{}", env.ruleset());
    // Inbound: the public address is DNATed to the task, and the SG admits only port 80.
    let pubip: Ipv4Addr = public.parse().unwrap();
    assert!(
        tcp_ok(&out_ns, pubip, 80),
        "public IP not mapped to the task"
    );
    assert!(
        !tcp_ok(&out_ns, pubip, 81),
        "unlisted port reachable through the public IP"
    );
    // Host policy on the uplink: only tcp 23790 from the outside range gets to the host.
    let host_ip: Ipv4Addr = format!("{outer}.1").parse().unwrap();
    let l1 = std::net::TcpListener::bind(("0.0.0.0", 23790)).unwrap();
    let l2 = std::net::TcpListener::bind(("0.0.0.0", 23791)).unwrap();
    let ok1 = connect(&out_ns, host_ip, 23790).is_some();
    let ok2 = connect(&out_ns, host_ip, 23791).is_some();
    drop((l1, l2));
    assert!(ok1, "allowed host port blocked");
    assert!(!ok2, "host port not in host_input.allow reachable");
}
