//! The broker restarted under a running `imgpipe bridge` and `imgpipe
//! process`: a private tansu keeping its data on disk (sqlite), killed
//! with SIGKILL and started again on the same port. Images sent before and
//! after all end processed, each exactly once, and `imgpipe verify` passes.

use std::time::{Duration, Instant};

use super::{
    create_topic, kafka_env, names, photos, produce, producer,
    secure::{free_port, tansu, tools},
};
use crate::common;

fn manifests(lake: &std::path::Path) -> usize {
    common::files_under(&lake.join("derived"))
        .iter()
        .filter(|k| k.ends_with(lake::layout::MANIFEST_FILE))
        .count()
}

fn wait_manifests(lake: &std::path::Path, n: usize, limit: Duration) {
    let start = Instant::now();
    while manifests(lake) < n {
        assert!(
            start.elapsed() < limit,
            "{} of {n} images processed after {limit:?}",
            manifests(lake)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_loses_and_doubles_nothing() {
    let Some(tansu_bin) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let broker_dir = dir.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let advertised = format!("tcp://{brokers}");
    let mut broker = tansu(&tansu_bin, &broker_dir, port, &advertised, false);

    let (topic, group) = names("restart");
    create_topic(&brokers, &topic, 2, Some(super::SIX_DAYS_MS)).await;
    let lake = dir.path().join("lake");
    let lake_arg = lake.to_str().unwrap().to_owned();
    let env = kafka_env(&brokers, &topic, &group);
    let (bridge, process) = super::bridge_and_processor(&lake_arg, &env);

    let images = photos(4 << 20, 6);
    assert_eq!(images.len(), 6, "the corpus has six photos under 4 MiB");
    let p = producer(&brokers);
    for (i, img) in images[..3].iter().enumerate() {
        produce(&p, &topic, Some(&format!("before-{i}")), &img.bytes).await;
    }
    drop(p);
    wait_manifests(&lake, 3, Duration::from_secs(120));

    // The broker dies without warning and comes back on its data.
    broker.kill().unwrap();
    broker.wait().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let mut broker = tansu(&tansu_bin, &broker_dir, port, &advertised, false);

    let p = producer(&brokers);
    for (i, img) in images[3..].iter().enumerate() {
        produce(&p, &topic, Some(&format!("after-{i}")), &img.bytes).await;
    }
    wait_manifests(&lake, 6, Duration::from_secs(180));
    // Time for any duplicate to show up before looking.
    std::thread::sleep(Duration::from_secs(3));
    bridge.stop();
    process.stop();
    broker.kill().unwrap();
    broker.wait().unwrap();

    let rows = common::parquet_rows(&lake);
    let mut shas: Vec<&str> = rows.iter().map(|r| r.sha256.as_str()).collect();
    shas.sort_unstable();
    shas.dedup();
    assert_eq!(rows.len(), 6, "one row per image");
    assert_eq!(shas.len(), 6, "no image twice");
    assert_eq!(manifests(&lake), 6);
    let (ok, out, err) = common::cli(&["verify", "--data-dir", &lake_arg]);
    assert!(ok, "{out}{err}");
}
