//! A runtime dropped while skydns serves (a test that panics, an embedding program that
//! exits without cancelling) does not hang: the UDP receive threads stop when the task that
//! would have told them to is dropped, and the runtime's shutdown completes.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use test_support::EtcdProcess;

#[test]
fn dropping_the_runtime_stops_the_udp_threads() {
    let etcd = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(EtcdProcess::start())
        .expect("etcd");
    let endpoint = etcd.endpoint();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sky = rt.block_on(async {
            let sky = common::start_skydns(&endpoint, "kube.local", None, &[]).await;
            common::ready(&sky).await;
            sky
        });
        // Neither cancelled nor awaited: the runtime goes away under the server.
        std::mem::forget(sky);
        drop(rt);
        let _ = done_tx.send(());
    });
    assert!(
        done_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "the runtime's shutdown hung on skydns's UDP threads"
    );
    drop(etcd);
}
