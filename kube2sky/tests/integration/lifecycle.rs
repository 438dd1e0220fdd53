//! Create, update and delete, asserting exactly what etcd holds after each step.

use crate::common::*;

const API_DISCOVERY: &str = "discovery.k8s.io/v1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_service_create_update_delete() {
    let (etcd, api, mut c) = cluster().await;
    let k = Kube2sky::start(&etcd.endpoint(), &api.url(), &[]).await;
    k.wait_ready().await;
    expect_exactly(&mut c, &records(&[])).await;

    // Create: single stack with a named and an unnamed port.
    api.apply(service_cluster_ip(
        "default",
        "web",
        &["10.96.0.10"],
        &[port("http", 80, "TCP"), port("", 81, "TCP")],
    ));
    let srv_http = srv("web.default.svc.cluster.local.", 80);
    let ptr_web = ptr(&["web.default.svc.cluster.local."]);
    expect_exactly(
        &mut c,
        &records(&[
            (&format!("{SVC}/default/web"), &a("10.96.0.10")),
            (&format!("{SVC}/default/web/_tcp/_http"), &srv_http),
            ("/skydns/arpa/in-addr/10/96/0/10", &ptr_web),
        ]),
    )
    .await;

    // ClusterIP change: the name is overwritten, the PTR moves.
    api.apply(service_cluster_ip(
        "default",
        "web",
        &["10.96.0.11"],
        &[port("http", 80, "TCP")],
    ));
    expect_exactly(
        &mut c,
        &records(&[
            (&format!("{SVC}/default/web"), &a("10.96.0.11")),
            (&format!("{SVC}/default/web/_tcp/_http"), &srv_http),
            ("/skydns/arpa/in-addr/10/96/0/11", &ptr_web),
        ]),
    )
    .await;

    // Port rename (and a UDP port): the old SRV name goes, the new ones come.
    api.apply(service_cluster_ip(
        "default",
        "web",
        &["10.96.0.11"],
        &[port("https", 443, "TCP"), port("dns", 53, "UDP")],
    ));
    expect_exactly(
        &mut c,
        &records(&[
            (&format!("{SVC}/default/web"), &a("10.96.0.11")),
            (
                &format!("{SVC}/default/web/_tcp/_https"),
                &srv("web.default.svc.cluster.local.", 443),
            ),
            (
                &format!("{SVC}/default/web/_udp/_dns"),
                &srv("web.default.svc.cluster.local.", 53),
            ),
            ("/skydns/arpa/in-addr/10/96/0/11", &ptr_web),
        ]),
    )
    .await;

    // Dual stack: one record per clusterIPs entry, a PTR for each family.
    api.apply(service_cluster_ip(
        "default",
        "web",
        &["10.96.0.11", "fd00::11"],
        &[],
    ));
    let v6_ptr = format!("/skydns/arpa/ip6/f/d/0/0/{}0/0/1/1", "0/".repeat(24));
    expect_exactly(
        &mut c,
        &records(&[
            (
                &format!("{SVC}/default/web"),
                &format!("[{},{}]", a("10.96.0.11"), a("fd00::11")),
            ),
            ("/skydns/arpa/in-addr/10/96/0/11", &ptr_web),
            (&v6_ptr, &ptr_web),
        ]),
    )
    .await;

    // Delete: nothing of it is left.
    assert!(api.delete("v1", "Service", "default", "web"));
    expect_exactly(&mut c, &records(&[])).await;
    assert!(k.is_running());
    k.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_service_follows_endpoint_readiness() {
    let (etcd, api, mut c) = cluster().await;
    let k = Kube2sky::start(&etcd.endpoint(), &api.url(), &[]).await;
    k.wait_ready().await;

    api.apply(service_headless("db", "pg", &[port("pg", 5432, "TCP")]));
    // No endpoint yet: no key at all (NXDOMAIN).
    api.apply(endpoint_slice(
        "db",
        "pg-a",
        "pg",
        "IPv4",
        &[endpoint(&["10.244.0.5"], Some("pg-0"), Some(false))],
        &[port("pg", 5432, "TCP")],
    ));
    api.apply(service_cluster_ip("db", "marker", &["10.96.1.1"], &[]));
    let marker = [
        (format!("{SVC}/db/marker"), a("10.96.1.1")),
        (
            "/skydns/arpa/in-addr/10/96/1/1".to_string(),
            ptr(&["marker.db.svc.cluster.local."]),
        ),
    ];
    let with_marker = |extra: &[(&str, &str)]| {
        let mut m = records(extra);
        m.extend(marker.iter().cloned());
        m
    };
    expect_exactly(&mut c, &with_marker(&[])).await;

    // pg-0 becomes ready; a second endpoint without hostname (ready unset = ready).
    api.apply(endpoint_slice(
        "db",
        "pg-a",
        "pg",
        "IPv4",
        &[
            endpoint(&["10.244.0.5"], Some("pg-0"), Some(true)),
            endpoint(&["10.244.0.6"], None, None),
        ],
        &[port("pg", 5432, "TCP"), port("", 9187, "TCP")],
    ));
    let both = with_marker(&[
        (&format!("{SVC}/db/pg"), &arr(&["10.244.0.5", "10.244.0.6"])),
        (&format!("{SVC}/db/pg/pg-0"), &a("10.244.0.5")),
        (&format!("{SVC}/db/pg/10-244-0-6"), &a("10.244.0.6")),
        (
            &format!("{SVC}/db/pg/_tcp/_pg"),
            &format!(
                "[{},{}]",
                srv("10-244-0-6.pg.db.svc.cluster.local.", 5432),
                srv("pg-0.pg.db.svc.cluster.local.", 5432)
            ),
        ),
        (
            "/skydns/arpa/in-addr/10/244/0/5",
            &ptr(&["pg-0.pg.db.svc.cluster.local."]),
        ),
        (
            "/skydns/arpa/in-addr/10/244/0/6",
            &ptr(&["10-244-0-6.pg.db.svc.cluster.local."]),
        ),
    ]);
    expect_exactly(&mut c, &both).await;

    // A second service selecting the same pod: its IP gets both PTR names.
    api.apply(service_headless("db", "pg-any", &[]));
    api.apply(endpoint_slice(
        "db",
        "pg-any-a",
        "pg-any",
        "IPv4",
        &[endpoint(&["10.244.0.5"], None, Some(true))],
        &[],
    ));
    let mut shared = both.clone();
    shared.insert(format!("{SVC}/db/pg-any"), a("10.244.0.5"));
    shared.insert(format!("{SVC}/db/pg-any/10-244-0-5"), a("10.244.0.5"));
    shared.insert(
        "/skydns/arpa/in-addr/10/244/0/5".into(),
        ptr(&[
            "10-244-0-5.pg-any.db.svc.cluster.local.",
            "pg-0.pg.db.svc.cluster.local.",
        ]),
    );
    expect_exactly(&mut c, &shared).await;
    api.delete("v1", "Service", "db", "pg-any");
    api.delete(API_DISCOVERY, "EndpointSlice", "db", "pg-any-a");
    expect_exactly(&mut c, &both).await;

    // pg-0 becomes unready: its name, address, SRV target and PTR go.
    api.apply(endpoint_slice(
        "db",
        "pg-a",
        "pg",
        "IPv4",
        &[
            endpoint(&["10.244.0.5"], Some("pg-0"), Some(false)),
            endpoint(&["10.244.0.6"], None, None),
        ],
        &[port("pg", 5432, "TCP")],
    ));
    expect_exactly(
        &mut c,
        &with_marker(&[
            (&format!("{SVC}/db/pg"), &a("10.244.0.6")),
            (&format!("{SVC}/db/pg/10-244-0-6"), &a("10.244.0.6")),
            (
                &format!("{SVC}/db/pg/_tcp/_pg"),
                &srv("10-244-0-6.pg.db.svc.cluster.local.", 5432),
            ),
            (
                "/skydns/arpa/in-addr/10/244/0/6",
                &ptr(&["10-244-0-6.pg.db.svc.cluster.local."]),
            ),
        ]),
    )
    .await;

    // A second slice (IPv6) adds to the same service.
    api.apply(endpoint_slice(
        "db",
        "pg-b",
        "pg",
        "IPv6",
        &[endpoint(&["fd00::6"], Some("pg-1"), Some(true))],
        &[port("pg", 5432, "TCP")],
    ));
    eventually(SETTLE, "IPv6 endpoint name", || {
        let mut c = c.clone();
        async move {
            let d = dump(&mut c).await?;
            (d.get(&format!("{SVC}/db/pg/pg-1")) == Some(&a("fd00::6"))
                && d.get(&format!("{SVC}/db/pg")) == Some(&arr(&["10.244.0.6", "fd00::6"])))
            .then_some(())
        }
    })
    .await;

    // Deleting the slices leaves the headless service without a key.
    api.delete(API_DISCOVERY, "EndpointSlice", "db", "pg-a");
    api.delete(API_DISCOVERY, "EndpointSlice", "db", "pg-b");
    expect_exactly(&mut c, &with_marker(&[])).await;
    k.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_type_changes_between_cluster_ip_headless_and_external_name() {
    let (etcd, api, mut c) = cluster().await;
    let k = Kube2sky::start(&etcd.endpoint(), &api.url(), &[]).await;
    k.wait_ready().await;
    api.apply(endpoint_slice(
        "default",
        "x-1",
        "x",
        "IPv4",
        &[endpoint(&["10.244.3.3"], Some("x-0"), Some(true))],
        &[port("http", 8080, "TCP")],
    ));

    let endpoint_records = [
        (format!("{SVC}/default/x/x-0"), a("10.244.3.3")),
        (
            "/skydns/arpa/in-addr/10/244/3/3".to_string(),
            ptr(&["x-0.x.default.svc.cluster.local."]),
        ),
    ];
    let with_endpoint = |extra: &[(&str, &str)]| {
        let mut m = records(extra);
        m.extend(endpoint_records.iter().cloned());
        m
    };

    let cluster_ip = with_endpoint(&[
        (&format!("{SVC}/default/x"), &a("10.96.3.3")),
        (
            &format!("{SVC}/default/x/_tcp/_http"),
            &srv("x.default.svc.cluster.local.", 80),
        ),
        (
            "/skydns/arpa/in-addr/10/96/3/3",
            &ptr(&["x.default.svc.cluster.local."]),
        ),
    ]);
    let headless = with_endpoint(&[
        (&format!("{SVC}/default/x"), &a("10.244.3.3")),
        (
            &format!("{SVC}/default/x/_tcp/_http"),
            &srv("x-0.x.default.svc.cluster.local.", 8080),
        ),
    ]);
    let external = with_endpoint(&[(
        &format!("{SVC}/default/x"),
        r#"{"host":"www.example.com","ttl":30}"#,
    )]);

    api.apply(service_cluster_ip(
        "default",
        "x",
        &["10.96.3.3"],
        &[port("http", 80, "TCP")],
    ));
    expect_exactly(&mut c, &cluster_ip).await;
    api.apply(service_headless("default", "x", &[port("http", 80, "TCP")]));
    expect_exactly(&mut c, &headless).await;
    api.apply(service_external_name("default", "x", "www.example.com"));
    expect_exactly(&mut c, &external).await;
    api.apply(service_cluster_ip(
        "default",
        "x",
        &["10.96.3.3"],
        &[port("http", 80, "TCP")],
    ));
    expect_exactly(&mut c, &cluster_ip).await;
    api.apply(service_external_name("default", "x", "www.example.com"));
    expect_exactly(&mut c, &external).await;
    api.apply(service_headless("default", "x", &[port("http", 80, "TCP")]));
    expect_exactly(&mut c, &headless).await;
    k.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_records_and_legacy_endpoints() {
    let (etcd, api, mut c) = cluster().await;
    api.apply(pod("apps", "p1", &["10.244.9.1"]));
    api.apply(pod("apps", "p2", &["10.244.9.1"])); // same IP (hostNetwork-like): one record
    let mut pending = pod("apps", "p3", &[]);
    pending["status"]["phase"] = "Pending".into();
    api.apply(pending);
    let mut done = pod("apps", "p4", &["10.244.9.4"]);
    done["status"]["phase"] = "Succeeded".into();
    api.apply(done);
    api.apply(service_headless(
        "apps",
        "legacy",
        &[port("http", 80, "TCP")],
    ));
    api.apply(endpoints_legacy(
        "apps",
        "legacy",
        &[("10.244.9.1", Some("web-0"))],
        &[("10.244.9.2", None)],
        &[port("http", 80, "TCP")],
    ));
    let k = Kube2sky::start(&etcd.endpoint(), &api.url(), &["--legacy-endpoints"]).await;
    k.wait_ready().await;
    let legacy = [
        (format!("{SVC}/apps/legacy"), a("10.244.9.1")),
        (format!("{SVC}/apps/legacy/web-0"), a("10.244.9.1")),
        (
            format!("{SVC}/apps/legacy/_tcp/_http"),
            srv("web-0.legacy.apps.svc.cluster.local.", 80),
        ),
        (
            "/skydns/arpa/in-addr/10/244/9/1".to_string(),
            ptr(&["web-0.legacy.apps.svc.cluster.local."]),
        ),
    ];
    let with_legacy = |extra: &[(&str, &str)]| {
        let mut m = records(extra);
        m.extend(legacy.iter().cloned());
        m
    };
    expect_exactly(
        &mut c,
        &with_legacy(&[(&format!("{POD}/apps/10-244-9-1"), &a("10.244.9.1"))]),
    )
    .await;

    // The pending pod gets an IP; one of the two pods sharing an IP goes; a dual-stack pod.
    let mut running = pod("apps", "p3", &["10.244.9.3"]);
    running["status"]["phase"] = "Pending".into();
    api.apply(running);
    api.delete("v1", "Pod", "apps", "p1");
    api.apply(pod("apps", "p5", &["10.244.9.5", "fd00::9:5"]));
    expect_exactly(
        &mut c,
        &with_legacy(&[
            (&format!("{POD}/apps/10-244-9-1"), &a("10.244.9.1")),
            (&format!("{POD}/apps/10-244-9-3"), &a("10.244.9.3")),
            (&format!("{POD}/apps/10-244-9-5"), &a("10.244.9.5")),
            (&format!("{POD}/apps/fd00--9-5"), &a("fd00::9:5")),
        ]),
    )
    .await;
    api.delete("v1", "Pod", "apps", "p2");
    api.delete("v1", "Pod", "apps", "p3");
    api.delete("v1", "Pod", "apps", "p5");
    expect_exactly(&mut c, &with_legacy(&[])).await;
    k.stop().await.expect("clean shutdown");

    // --pod-records=false: no pod tree at all, and the pods are not even watched.
    api.apply(pod("apps", "p6", &["10.244.9.6"]));
    let before = api
        .requests()
        .iter()
        .filter(|r| r.contains("/pods"))
        .count();
    let k = Kube2sky::start(
        &etcd.endpoint(),
        &api.url(),
        &["--legacy-endpoints", "--pod-records=false"],
    )
    .await;
    k.wait_ready().await;
    expect_exactly(&mut c, &with_legacy(&[])).await;
    assert_eq!(
        api.requests()
            .iter()
            .filter(|r| r.contains("/pods"))
            .count(),
        before
    );
    k.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_objects_are_skipped_and_others_unaffected() {
    let (etcd, api, mut c) = cluster().await;
    let mut bad_ip = service_cluster_ip("default", "bad-ip", &["10.96.5.1"], &[]);
    bad_ip["spec"]["clusterIP"] = "not-an-ip".into();
    bad_ip["spec"]["clusterIPs"] = serde_json::json!(["not-an-ip"]);
    api.apply(bad_ip);
    let mut no_spec = service_cluster_ip("default", "no-spec", &["10.96.5.2"], &[]);
    if let Some(o) = no_spec.as_object_mut() {
        o.remove("spec");
    }
    api.apply(no_spec);
    let mut odd_ports = service_cluster_ip(
        "default",
        "odd-ports",
        &["10.96.5.3"],
        &[port("ok", 80, "TCP")],
    );
    if let Some(p) = odd_ports["spec"]["ports"].as_array_mut() {
        p.push(serde_json::json!({"name": "bad", "port": "eighty"}));
    }
    api.apply(odd_ports);
    let mut wrong_types = service_cluster_ip("default", "wrong-types", &["10.96.5.4"], &[]);
    wrong_types["spec"]["clusterIPs"] = serde_json::json!({"not": "a list"});
    api.apply(wrong_types);
    let mut odd_slice = endpoint_slice(
        "default",
        "good-1",
        "good",
        "IPv4",
        &[endpoint(&["10.244.5.5"], None, Some(true))],
        &[],
    );
    if let Some(e) = odd_slice["endpoints"].as_array_mut() {
        e.push(serde_json::json!({"addresses": ["bogus"]}));
    }
    api.apply(odd_slice);
    api.apply(service_headless("default", "good", &[]));
    let mut bad_pod = pod("default", "bad-pod", &["10.244.5.9"]);
    bad_pod["status"]["podIPs"] = serde_json::json!([{"ip": "999.1.1.1"}]);
    api.apply(bad_pod);

    let k = Kube2sky::start(&etcd.endpoint(), &api.url(), &[]).await;
    k.wait_ready().await;
    expect_exactly(
        &mut c,
        &records(&[
            (&format!("{SVC}/default/odd-ports"), &a("10.96.5.3")),
            (
                &format!("{SVC}/default/odd-ports/_tcp/_ok"),
                &srv("odd-ports.default.svc.cluster.local.", 80),
            ),
            (
                "/skydns/arpa/in-addr/10/96/5/3",
                &ptr(&["odd-ports.default.svc.cluster.local."]),
            ),
            (&format!("{SVC}/default/good"), &a("10.244.5.5")),
            (&format!("{SVC}/default/good/10-244-5-5"), &a("10.244.5.5")),
            (
                "/skydns/arpa/in-addr/10/244/5/5",
                &ptr(&["10-244-5-5.good.default.svc.cluster.local."]),
            ),
        ]),
    )
    .await;
    assert_eq!(
        k.metric(r#"kube2sky_skipped_objects_total{resource="services"}"#)
            .await,
        3.0
    );

    // A good service that turns odd loses its records; fixing it brings them back.
    let mut broken = service_cluster_ip("default", "odd-ports", &["10.96.5.3"], &[]);
    broken["spec"]["clusterIP"] = "10.96.5.300".into();
    broken["spec"]["clusterIPs"] = serde_json::json!(["10.96.5.300"]);
    api.apply(broken);
    let good = [
        (format!("{SVC}/default/good"), a("10.244.5.5")),
        (format!("{SVC}/default/good/10-244-5-5"), a("10.244.5.5")),
        (
            "/skydns/arpa/in-addr/10/244/5/5".to_string(),
            ptr(&["10-244-5-5.good.default.svc.cluster.local."]),
        ),
    ];
    let mut only_good = records(&[]);
    only_good.extend(good.iter().cloned());
    expect_exactly(&mut c, &only_good).await;
    assert!(k.is_running());
    k.stop().await.expect("clean shutdown");
}
