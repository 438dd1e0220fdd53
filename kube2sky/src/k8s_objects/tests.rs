//! Tests of `k8s_objects`.

use super::*;
use serde_json::json;

fn conv<T: PartialObject>(v: serde_json::Value) -> Converted {
    let obj: T = serde_json::from_value(v).expect("decodes");
    obj.convert()
}

fn service(spec: serde_json::Value) -> Converted {
    conv::<Service>(
        json!({"metadata":{"name":"web","namespace":"default","resourceVersion":"5",
        "annotations":{"big":"x"},"managedFields":[{"x":1}]},"spec":spec}),
    )
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn svc_kind(c: &Converted) -> &ServiceKind {
    match &c.object {
        Ok(SlimObject::Service(s)) => &s.kind,
        other => panic!("{other:?}"),
    }
}

#[test]
fn services() {
    let c = service(json!({"clusterIP":"10.0.0.1","ports":[{"name":"http","port":80}]}));
    assert_eq!(svc_kind(&c), &ServiceKind::ClusterIp(vec![ip("10.0.0.1")]));
    let c = service(json!({"clusterIP":"10.0.0.1","clusterIPs":["10.0.0.1","fd00::1"]}));
    assert_eq!(
        svc_kind(&c),
        &ServiceKind::ClusterIp(vec![ip("10.0.0.1"), ip("fd00::1")])
    );
    let c = service(json!({"clusterIP":"None","clusterIPs":["None"]}));
    assert_eq!(svc_kind(&c), &ServiceKind::Headless);
    let c = service(json!({"type":"ExternalName","externalName":"www.example.com"}));
    assert_eq!(
        svc_kind(&c),
        &ServiceKind::ExternalName("www.example.com".into())
    );
    let Ok(SlimObject::Service(s)) =
        service(json!({"clusterIP":"10.0.0.1","ports":[{"port":53,"protocol":"UDP","name":"dns"},{"port":80}]})).object
    else {
        panic!()
    };
    assert_eq!(
        s.ports,
        vec![
            SlimPort {
                name: "dns".into(),
                protocol: Protocol::Udp,
                port: 53
            },
            SlimPort {
                name: String::new(),
                protocol: Protocol::Tcp,
                port: 80
            },
        ]
    );
}

#[test]
fn odd_services_are_skipped_as_invalid() {
    for spec in [
        json!({"clusterIP":"not-an-ip"}),
        json!({"clusterIP":""}),
        json!({}),
        json!({"clusterIP": 7}),
        json!({"clusterIPs": "10.0.0.1"}),
        json!({"type":"ExternalName"}),
        json!({"type":"ExternalName","externalName":"bad name!"}),
        json!("not an object"),
    ] {
        let c = service(spec.clone());
        assert!(
            matches!(c.object, Err(Skip::Invalid(_))),
            "{spec}: {:?}",
            c.object
        );
    }
    let c = conv::<Service>(
        json!({"metadata":{"name":"a/b","namespace":"default"},"spec":{"clusterIP":"10.0.0.1"}}),
    );
    assert!(matches!(c.object, Err(Skip::Invalid(_))));
    let c = conv::<Service>(json!({"metadata":"junk","spec":{"clusterIP":"10.0.0.1"}}));
    assert!(matches!(c.object, Err(Skip::Invalid(_))));
}

#[test]
fn odd_ports_are_dropped_with_a_warning() {
    let c = service(json!({"clusterIP":"10.0.0.1","ports":[
        {"name":"ok","port":80},{"name":"big","port":70000},{"name":"neg","port":-1},
        {"name":"str","port":"80"},{"name":"proto","port":81,"protocol":"XTP"},
        {"name":"Bad/Name","port":82},"junk"]}));
    let Ok(SlimObject::Service(s)) = &c.object else {
        panic!("{:?}", c.object)
    };
    assert_eq!(s.ports.len(), 2);
    assert_eq!(s.ports[1].name, "");
    assert_eq!(c.warnings.len(), 6, "{:?}", c.warnings);
}

fn slice(extra: serde_json::Value) -> Converted {
    let mut v = json!({"metadata":{"name":"web-abc","namespace":"default",
        "labels":{"kubernetes.io/service-name":"web","other":"x"}},"addressType":"IPv4"});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in e {
            o.insert(k.clone(), val.clone());
        }
    }
    conv::<EndpointSlice>(v)
}

#[test]
fn endpoint_slices_keep_only_ready_endpoints() {
    let c = slice(json!({"endpoints":[
        {"addresses":["10.1.0.1"],"hostname":"web-0","conditions":{"ready":true}},
        {"addresses":["10.1.0.2"]},
        {"addresses":["10.1.0.3"],"conditions":{"ready":false}},
        {"addresses":["10.1.0.4"],"conditions":{"ready":"yes"}},
        {"addresses":["garbage"]},
        {"addresses":["10.1.0.5"],"hostname":"Not_A_Label"}
    ],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}));
    let Ok(SlimObject::Endpoints(e)) = &c.object else {
        panic!("{:?}", c.object)
    };
    assert_eq!(e.service, "web");
    let eps = &e.groups[0].endpoints;
    assert_eq!(
        eps,
        &vec![
            SlimEndpoint {
                addresses: vec![ip("10.1.0.1")],
                hostname: Some("web-0".into())
            },
            SlimEndpoint {
                addresses: vec![ip("10.1.0.2")],
                hostname: None
            },
            SlimEndpoint {
                addresses: vec![ip("10.1.0.5")],
                hostname: None
            },
        ]
    );
    assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    assert_eq!(e.groups[0].ports[0].port, 8080);
}

#[test]
fn slices_without_service_or_with_fqdn_are_ignored() {
    let c = conv::<EndpointSlice>(
        json!({"metadata":{"name":"x","namespace":"default"},"endpoints":[]}),
    );
    assert!(matches!(c.object, Err(Skip::Ignore(_))));
    let c = slice(json!({"addressType":"FQDN","endpoints":[{"addresses":["a.example.com"]}]}));
    assert!(matches!(c.object, Err(Skip::Ignore(_))));
    let c = slice(json!({"endpoints":"nope"}));
    assert!(matches!(c.object, Err(Skip::Invalid(_))));
    let c = slice(json!({"endpoints":null,"ports":null}));
    assert!(c.object.is_ok());
}

#[test]
fn legacy_endpoints() {
    let c = conv::<Endpoints>(
        json!({"metadata":{"name":"web","namespace":"default"},"subsets":[
        {"addresses":[{"ip":"10.1.0.1","hostname":"web-0"},{"ip":"10.1.0.2"}],
         "notReadyAddresses":[{"ip":"10.1.0.3"}],"ports":[{"name":"http","port":80}]}]}),
    );
    let Ok(SlimObject::Endpoints(e)) = &c.object else {
        panic!("{:?}", c.object)
    };
    assert_eq!(e.service, "web");
    assert_eq!(e.groups.len(), 1);
    assert_eq!(e.groups[0].endpoints.len(), 2);
    assert_eq!(e.groups[0].endpoints[0].hostname.as_deref(), Some("web-0"));
}

#[test]
fn pods() {
    let pod = |status: serde_json::Value| {
        conv::<Pod>(json!({"metadata":{"name":"p","namespace":"ns1"},
            "spec":{"containers":[{"name":"c","image":"x"}]},"status":status}))
    };
    let c = pod(
        json!({"phase":"Running","podIP":"10.2.0.1","podIPs":[{"ip":"10.2.0.1"},{"ip":"fd00::5"}]}),
    );
    assert_eq!(
        c.object,
        Ok(SlimObject::Pod(SlimPod {
            id: ObjRef::new("ns1", "p"),
            ips: vec![ip("10.2.0.1"), ip("fd00::5")]
        }))
    );
    let c = pod(json!({"phase":"Pending","podIP":"10.2.0.1"}));
    assert!(c.object.is_ok());
    for status in [
        json!({"phase":"Succeeded","podIP":"10.2.0.1"}),
        json!({"phase":"Pending"}),
        json!({"phase":"Running","podIP":""}),
        json!(null),
    ] {
        assert!(
            matches!(pod(status.clone()).object, Err(Skip::Ignore(_))),
            "{status}"
        );
    }
    let c = pod(json!({"phase":"Running","podIPs":[{"ip":"bad"}]}));
    assert!(c.object.is_err());
    assert_eq!(c.warnings.len(), 1);
}

#[test]
fn metadata_is_cut_down() {
    let s: Service = serde_json::from_value(json!({"metadata":{"name":"web","namespace":"default",
        "resourceVersion":"9","labels":{"app":"x"},"annotations":{"a":"b"}},"spec":{}}))
    .unwrap();
    assert_eq!(s.metadata.resource_version.as_deref(), Some("9"));
    assert!(s.metadata.labels.is_none());
    assert!(s.metadata.annotations.is_none());
}

#[test]
fn a_list_with_one_odd_object_still_decodes() {
    let list: kube::core::ObjectList<Service> = serde_json::from_value(json!({
        "apiVersion":"v1","kind":"ServiceList","metadata":{"resourceVersion":"10"},
        "items":[
            {"metadata":{"name":"a","namespace":"default"},"spec":{"clusterIP":"10.0.0.1","ports":[{"port":"x"}]}},
            {"metadata":{"name":"b","namespace":"default"},"spec":{"clusterIP":["weird"]}},
            {"metadata":{"name":"c","namespace":"default"},"spec":{"clusterIP":"10.0.0.3"}}
        ]})).unwrap();
    let ok: Vec<bool> = list
        .items
        .iter()
        .map(|s| s.convert().object.is_ok())
        .collect();
    assert_eq!(ok, vec![true, false, true]);
}
