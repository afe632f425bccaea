//! ENI lifecycle against the real kernel: bad input and roll back (also after the links and
//! tap were made), kill -9 and restart, conntrack entries flushed with a deleted or stale
//! ENI, 200 ENIs leaving nothing behind, SIGTERM.

mod common;

use common::*;
use netd::model::Protocol;

#[test]
fn bad_input_is_rejected_without_partial_state() {
    let mut env = Env::new(&["svc", "tiny"], 24);
    // Make "tiny" a /29: 6 hosts minus gateway and dns (.1) = 5 usable addresses.
    let text = std::fs::read_to_string(&env.config).unwrap();
    let tiny = format!("{}.0/24", env.subnets[1].1);
    std::fs::write(
        &env.config,
        text.replace(&tiny, &tiny.replace("/24", "/29")),
    )
    .unwrap();
    env.start();
    let rt = rt();
    let c = env.client();
    rt.block_on(async {
        put(&c, "g", spec(vec![], egress_all())).await;
        // Invalid rules.
        let bad = spec(
            vec![rule(
                Protocol::Tcp,
                Some((90, 80)),
                Some("10.0.0.0/8"),
                None,
            )],
            vec![],
        );
        assert_eq!(
            api_status(c.put_group("x", &bad).await),
            (400, "InvalidParameter".into())
        );
        let bad = spec(
            vec![rule(Protocol::Icmp, Some((1, 1)), Some("10.0.0.0/8"), None)],
            vec![],
        );
        assert_eq!(api_status(c.put_group("x", &bad).await).0, 400);
        let bad = spec(vec![rule(Protocol::Tcp, None, None, Some("nope"))], vec![]);
        assert_eq!(api_status(c.put_group("x", &bad).await).0, 400);
        // Unknown group / subnet, same subnet twice, bad task id: nothing created.
        assert_eq!(
            api_status(c.create_task("t1", &req(vec![eni("svc", &["nope"])])).await).0,
            400
        );
        assert_eq!(
            api_status(c.create_task("t1", &req(vec![eni("nowhere", &[])])).await).0,
            400
        );
        let twice = req(vec![eni("svc", &[]), eni("svc", &[])]);
        assert_eq!(api_status(c.create_task("t1", &twice).await).0, 400);
        assert_eq!(
            api_status(c.create_task("bad.id", &req(vec![eni("svc", &[])])).await).0,
            400
        );
        // Duplicate task: the same request is idempotent, a different one conflicts.
        let t = create(&c, "t1", vec![eni("svc", &["g"])]).await;
        let again = create(&c, "t1", vec![eni("svc", &["g"])]).await;
        assert_eq!(t, again);
        assert_eq!(
            api_status(c.create_task("t1", &req(vec![eni("svc", &[])])).await).0,
            409
        );
        // Group in use cannot be deleted.
        assert_eq!(
            api_status(c.delete_group("g").await),
            (409, "Conflict".into())
        );
        assert_eq!(api_status(c.delete_task("ghost").await).0, 404);
        // Exhaust the /29.
        let mut ips = std::collections::HashSet::new();
        for i in 0..5 {
            let t = create(&c, &format!("x{i}"), vec![eni("tiny", &[])]).await;
            assert!(ips.insert(t.enis[0].ip), "address handed out twice");
        }
        let e = c.create_task("x5", &req(vec![eni("tiny", &[])])).await;
        assert_eq!(api_status(e), (409, "SubnetExhausted".into()));
        // A failure in the middle of creation (the namespace path is taken) rolls back.
        std::fs::create_dir_all(format!("/var/run/netns/{}broken", env.ns_prefix)).unwrap();
        let e = c
            .create_task("broken", &req(vec![eni("svc", &["g"])]))
            .await;
        assert_eq!(api_status(e).0, 500);
        std::fs::remove_dir(format!("/var/run/netns/{}broken", env.ns_prefix)).unwrap();
        assert_eq!(api_status(c.task("broken").await).0, 404);
        // Release: deleting one makes room again.
        c.delete_task("x2").await.unwrap();
        create(&c, "x5", vec![eni("tiny", &[])]).await;
        assert_eq!(c.tasks().await.unwrap().len(), 6); // t1 + x0..x5 without x2
    });
    // Only ENIs of existing tasks exist in the kernel: 6 tasks = 6 veths (+2 gateways).
    let veths = env
        .host_links()
        .iter()
        .filter(|l| !l.starts_with(&format!("{}g", env.if_prefix)))
        .count();
    assert_eq!(veths, 6, "{:?}", env.host_links());
    assert_eq!(env.namespaces().len(), 6, "{:?}", env.namespaces());
    let chains = env.ruleset().matches("chain eni_").count();
    assert_eq!(chains, 12, "{}", env.ruleset());
}

#[test]
fn overlapping_subnets_refuse_to_start() {
    let env = Env::new(&["a", "b"], 24);
    let text = std::fs::read_to_string(&env.config).unwrap();
    let b = format!("{}.0/24", env.subnets[1].1);
    let a = format!("{}.0.0/16", env.subnets[0].1.rsplit_once('.').unwrap().0);
    std::fs::write(&env.config, text.replace(&b, &a)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netd"))
        .arg("--config")
        .arg(&env.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("overlap"), "{err}");
    assert!(
        env.host_links().is_empty(),
        "netd created links before validating"
    );
}

#[test]
fn kill9_and_restart_keeps_addresses_rules_and_traffic() {
    let (mut env, rt, c) = started(&["svc", "cust"]);
    let (srv, cli, oth) = rt.block_on(async {
        put_egress_all(&c, "client").await;
        put_ingress(&c, "web", vec![tcp_from_group((8080, 8080), "client")]).await;
        let srv = create(&c, "srv", vec![eni("svc", &["web"]), eni("cust", &[])]).await;
        let cli = create(&c, "cli", vec![eni("svc", &["client"])]).await;
        let oth = create(&c, "oth", vec![eni("svc", &[])]).await;
        (srv, cli, oth)
    });
    let (gs, gc, go) = (env.guest(&srv), env.guest(&cli), env.guest(&oth));
    let _s = [serve(&gs, 8080), serve(&gs, 8081)];
    let mut conn = connect(&gc, ip(&srv, 0), 8080).expect("allowed connection");
    assert!(echo(&mut conn, b"before"));
    let rules_before = env.ruleset();
    let state_before = std::fs::read_to_string(env.dir.join("state.json")).unwrap();

    env.kill9();
    // While netd is dead, the data plane keeps working and keeps enforcing.
    assert!(
        echo(&mut conn, b"while-down"),
        "traffic interrupted by netd's death"
    );
    assert!(tcp_ok(&gc, ip(&srv, 0), 8080));
    assert!(!tcp_ok(&gc, ip(&srv, 0), 8081));

    // An orphan left behind by a task that no longer exists is removed on restart.
    let orphan_ns = format!("{}gone", env.ns_prefix);
    sh(&["ip", "netns", "add", &orphan_ns]);
    let orphan_if = format!("{}deadbeef", env.if_prefix);
    sh(&[
        "ip",
        "link",
        "add",
        &orphan_if,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{orphan_if}p"),
    ]);

    env.start();
    assert!(
        echo(&mut conn, b"after"),
        "traffic interrupted by the restart"
    );
    let rt2 = common::rt();
    rt2.block_on(async {
        let c = env.client();
        assert_eq!(c.task("srv").await.unwrap(), srv);
        assert_eq!(c.task("cli").await.unwrap(), cli);
        // No double allocation: a new task gets an address nobody holds.
        let n = create(&c, "new", vec![eni("svc", &[])]).await;
        assert!(![ip(&srv, 0), ip(&cli, 0), ip(&oth, 0)].contains(&n.enis[0].ip));
        c.delete_task("new").await.unwrap();
    });
    let strip = |s: &str| {
        let mut l: Vec<String> = s
            .lines()
            .map(|l| l.trim().trim_end_matches(',').to_string())
            .collect();
        l.sort();
        l
    };
    assert_eq!(
        strip(&env.ruleset()),
        strip(&rules_before),
        "rules changed across restart"
    );
    let state_after = std::fs::read_to_string(env.dir.join("state.json")).unwrap();
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap()["tasks"].clone();
    assert_eq!(parse(&state_after), parse(&state_before));
    assert!(tcp_ok(&gc, ip(&srv, 0), 8080));
    assert!(!tcp_ok(&gc, ip(&srv, 0), 8081));
    assert!(!tcp_ok(&go, ip(&srv, 0), 8080));
    assert!(
        !env.namespaces().contains(&orphan_ns),
        "orphan namespace kept"
    );
    assert!(!env.host_links().contains(&orphan_if), "orphan veth kept");
}

#[test]
fn two_hundred_enis_leave_nothing_behind() {
    let (env, rt, c) = started(&["svc", "cust"]);
    let rules_empty = env.ruleset();
    rt.block_on(async {
        put(
            &c,
            "a",
            spec(vec![tcp_from_group((80, 80), "a")], egress_all()),
        )
        .await;
        for i in 0..100 {
            let r = req(vec![eni("svc", &["a"]), eni("cust", &["a"])]);
            c.create_task(&format!("m{i}"), &r).await.unwrap();
        }
    });
    assert_eq!(env.namespaces().len(), 100);
    let gw = format!("{}g", env.if_prefix);
    assert_eq!(
        env.host_links()
            .iter()
            .filter(|l| !l.starts_with(&gw))
            .count(),
        200
    );
    assert_eq!(env.ruleset().matches("chain eni_").count(), 400);
    rt.block_on(async {
        for i in 0..100 {
            c.delete_task(&format!("m{i}")).await.unwrap();
        }
        c.delete_group("a").await.unwrap();
        assert!(c.tasks().await.unwrap().is_empty());
    });
    assert!(env.namespaces().is_empty(), "{:?}", env.namespaces());
    let left: Vec<_> = env
        .host_links()
        .into_iter()
        .filter(|l| !l.starts_with(&gw))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    for (_, net) in &env.subnets {
        let routes = sh_out(&["ip", "-o", "route", "show", "root", &format!("{net}.0/24")]);
        assert_eq!(routes.lines().count(), 1, "leftover routes: {routes}"); // only `unreachable`
        let addrs = sh_out(&["ip", "-o", "addr"]);
        assert_eq!(addrs.matches(&format!("{net}.")).count(), 1, "{addrs}"); // only the gateway
    }
    assert_eq!(env.ruleset(), rules_empty, "rules left behind");
}

#[test]
fn sigterm_stops_cleanly_and_keeps_enis() {
    let (mut env, rt, c) = started(&["svc"]);
    let t = rt.block_on(create(&c, "keep", vec![eni("svc", &[])]));
    let st = env.terminate();
    assert!(st.success(), "netd exited with {st}");
    assert!(!env.socket.exists(), "socket left behind");
    assert_eq!(
        env.namespaces(),
        vec![t.netns.clone()],
        "ENIs must outlive netd"
    );
    assert!(env.host_links().contains(&t.enis[0].host_if));
    env.start();
    rt.block_on(async { assert_eq!(c.task("keep").await.unwrap(), t) });
}

/// Host-namespace conntrack entries with `ip` as an original or reply source or destination
/// (read from the kernel's own table).
fn conntrack_entries(ip: std::net::Ipv4Addr) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/nf_conntrack").expect("conntrack table");
    let (src, dst) = (format!(" src={ip} "), format!(" dst={ip} "));
    table
        .lines()
        .filter(|l| l.contains(&src) || l.contains(&dst))
        .map(String::from)
        .collect()
}

#[test]
fn deleted_and_stale_enis_leave_no_conntrack_entries() {
    let (mut env, rt, c) = started(&["svc"]);
    let (srv, a, b, d) = rt.block_on(async {
        put_egress_all(&c, "client").await;
        put_ingress(&c, "web", vec![tcp_from_group((8080, 8080), "client")]).await;
        let srv = create(&c, "srv", vec![eni("svc", &["web"])]).await;
        let a = create(&c, "a", vec![eni("svc", &["client"])]).await;
        let b = create(&c, "b", vec![eni("svc", &["client"])]).await;
        let d = create(&c, "d", vec![eni("svc", &["client"])]).await;
        (srv, a, b, d)
    });
    let gs = env.guest(&srv);
    let _s = serve(&gs, 8080);
    // One open (idle, ESTABLISHED: tracked for days) connection per client task.
    let mut conns: Vec<_> = [&a, &b, &d]
        .iter()
        .map(|t| {
            let g = env.guest(t);
            let mut s = connect(&g, ip(&srv, 0), 8080).expect("allowed connection");
            assert!(echo(&mut s, b"hello"));
            s
        })
        .collect();
    for t in [&a, &b, &d] {
        assert!(
            !conntrack_entries(ip(t, 0)).is_empty(),
            "no conntrack entry for {}: is the host tracking?",
            ip(t, 0)
        );
    }
    // The entry of a task's own connection (other entries of its address may be left
    // over from earlier runs and expire at any time).
    let ports: Vec<u16> = conns
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    let own_entry = |i: usize, t: &netd::Task| {
        let port = ports[i];
        let flow = format!(
            " src={} dst={} sport={port} dport=8080 ",
            ip(t, 0),
            ip(&srv, 0)
        );
        conntrack_entries(ip(t, 0))
            .iter()
            .any(|l| l.contains(&flow))
    };
    assert!(own_entry(1, &b) && own_entry(2, &d));

    // API delete: a's entries go, nobody else's.
    rt.block_on(async { c.delete_task("a").await.unwrap() });
    assert_eq!(conntrack_entries(ip(&a, 0)), Vec::<String>::new());
    assert!(own_entry(1, &b), "another task's entry was flushed");
    assert!(echo(&mut conns[1], b"b still flows"));

    // A stale ENI found at start (its task is gone from the state): its veth is removed
    // and its entries with it; d's stay and d's connection survives the restart.
    env.kill9();
    let path = env.dir.join("state.json");
    let mut st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    st["tasks"].as_object_mut().unwrap().remove("b");
    std::fs::write(&path, serde_json::to_vec(&st).unwrap()).unwrap();
    env.start();
    assert_eq!(conntrack_entries(ip(&b, 0)), Vec::<String>::new());
    assert!(own_entry(2, &d), "another task's entry was flushed");
    assert!(echo(&mut conns[2], b"d still flows"));
    assert!(!env
        .host_links()
        .iter()
        .any(|l| l.starts_with(&b.enis[0].host_if)));
}

#[test]
fn a_failure_after_the_links_were_made_leaves_nothing_behind() {
    let (mut env, rt, c) = started(&["svc", "cust"]);
    rt.block_on(async { put_egress_all(&c, "g").await });
    // The nft step comes last: with netd's table gone under it, the namespace, veths,
    // bridges and taps of both ENIs exist when the rules fail.
    sh(&["nft", "delete", "table", "inet", &env.table]);
    let e = rt.block_on(c.create_task("t", &req(vec![eni("svc", &["g"]), eni("cust", &[])])));
    assert_eq!(api_status(e), (500, "NftablesError".into()));
    rt.block_on(async { assert_eq!(api_status(c.task("t").await).0, 404) });
    let veths: Vec<_> = env
        .host_links()
        .into_iter()
        .filter(|l| !l.starts_with(&format!("{}g", env.if_prefix)))
        .collect();
    assert_eq!(veths, Vec::<String>::new(), "links left behind");
    assert_eq!(
        env.namespaces(),
        Vec::<String>::new(),
        "namespace left behind"
    );
    // Nor in the state: a restart (which rebuilds the table) brings nothing back, and the
    // same task can then be created.
    env.kill9();
    env.start();
    rt.block_on(async {
        assert!(c.tasks().await.unwrap().is_empty());
        create(&c, "t", vec![eni("svc", &["g"]), eni("cust", &[])]).await;
    });
    assert_eq!(env.namespaces().len(), 1);
}
