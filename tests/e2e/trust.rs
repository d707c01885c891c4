//! The privacy promise against every caller: what each key may see and do
//! over HTTP, and what no caller can plant.
#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use lake::Store;
use serde_json::Value;

use crate::common::*;

const RESTRICTED: [&str; 5] = [
    "exif_make",
    "exif_model",
    "gps_lat",
    "gps_lon",
    "source_ref",
];

/// GET with a key; (status, JSON body).
async fn get_as(client: &reqwest::Client, app: &Imgpipe, key: &str, path: &str) -> (u16, Value) {
    let resp = client
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn wait_processed_as(client: &reqwest::Client, app: &Imgpipe, key: &str, id: &str) -> Value {
    let start = std::time::Instant::now();
    loop {
        let (_, v) = get_as(client, app, key, &format!("/v1/images/{id}")).await;
        if is_final(&v) {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn config_file(dir: &Path, text: &str) -> String {
    let path = dir.join("imgpipe.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// An image with EXIF make/model and GPS, read by id and by content hash:
/// the analyst sees none of the restricted fields, the privacy officer all
/// of them, and the Kafka-only principal does not see the HTTP image at all.
#[tokio::test(flavor = "multi_thread")]
async fn reads_by_id_and_by_content_show_only_the_callers_view() {
    let dir = tempfile::tempdir().unwrap();
    let (analyst, officer, kafka_only) = (
        "analyst-key-0123456789",
        "officer-key-0123456789",
        "kafka-key-0123456789ab",
    );
    // The deprecated plain-key form still maps keys to principals.
    let cfg = config_file(
        dir.path(),
        &format!(
            "[api]\napi_keys = [\"{analyst}\", \"{officer}\", \"{kafka_only}\"]\n\
             [api.key_principals]\n\"{officer}\" = \"privacy-officer\"\n\"{kafka_only}\" = \"kafka-analyst\"\n"
        ),
    );
    let app = Imgpipe::start_with_args(&dir.path().join("lake"), &[], &["--config", &cfg]);
    let client = client();
    let image = corpus()
        .into_iter()
        .find(|c| c.file == "lomiri16_Dragonfly_by_Bolly.jpg")
        .unwrap();
    let resp = client
        .post(app.url("/v1/images"))
        .bearer_auth(analyst)
        .body(std::fs::read(&image.path).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let v = wait_processed_as(&client, &app, officer, &id).await;
    assert_eq!(v["status"], "processed", "{v}");
    let m = &v["metadata"];
    assert_eq!(m["exif_make"], "Synthetic", "the officer sees EXIF: {m}");
    assert!(m["gps_lat"].as_f64().is_some(), "{m}");

    let by_id = get_as(&client, &app, analyst, &format!("/v1/images/{id}")).await;
    let by_sha = get_as(
        &client,
        &app,
        analyst,
        &format!("/v1/images?sha256={}", image.sha256),
    )
    .await;
    assert_eq!((by_id.0, by_sha.0), (200, 200), "{by_id:?} {by_sha:?}");
    let found = by_sha.1["images"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    for shown in [&by_id.1, &found[0]] {
        let m = shown["metadata"].as_object().unwrap();
        assert_eq!(m["width"], image.width, "{m:?}");
        for column in RESTRICTED {
            assert!(!m.contains_key(column), "analyst sees {column}: {m:?}");
        }
    }

    // The row filter hides HTTP images from the Kafka-only principal.
    let (status, v) = get_as(&client, &app, kafka_only, &format!("/v1/images/{id}")).await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = get_as(
        &client,
        &app,
        kafka_only,
        &format!("/v1/images?sha256={}", image.sha256),
    )
    .await;
    assert_eq!(status, 200);
    assert!(v["images"].as_array().unwrap().is_empty(), "{v}");
    app.stop();
}

/// `[[api.keys]]`: digests with a principal and permissions. A read-only
/// key cannot upload or erase; only a key with `images:erase` erases;
/// `/metrics` needs `metrics:read`; `/healthz` stays open but names nothing.
#[tokio::test(flavor = "multi_thread")]
async fn every_route_checks_the_keys_permission() {
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer, eraser, ops) = (
        "reader-key-0123456789",
        "writer-key-0123456789",
        "eraser-key-0123456789",
        "metrics-key-0123456789",
    );
    let digest = |k: &str| {
        let (ok, out, err) = cli(&["keys", "hash", k]);
        assert!(ok, "{err}");
        out.trim().to_owned()
    };
    let key = |k: &str, principal: &str, permissions: &str| {
        format!(
            "[[api.keys]]\nsha256 = \"{}\"\nprincipal = \"{principal}\"\npermissions = [{permissions}]\n",
            digest(k)
        )
    };
    let cfg = config_file(
        dir.path(),
        &[
            key(reader, "analyst", "\"images:read\""),
            key(writer, "analyst", "\"images:write\", \"images:read\""),
            key(eraser, "privacy-officer", "\"images:erase\""),
            key(ops, "analyst", "\"metrics:read\""),
        ]
        .concat(),
    );
    let app = Imgpipe::start_with_args(&dir.path().join("lake"), &[], &["--config", &cfg]);
    let client = client();
    let bytes = std::fs::read(corpus_dir().join("skimage_camera.png")).unwrap();
    let post = |key: &'static str| {
        client
            .post(app.url("/v1/images"))
            .bearer_auth(key)
            .body(bytes.clone())
            .send()
    };

    let resp = post(reader).await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "forbidden", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("images:write"));
    let resp = post(writer).await.unwrap();
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // No key, or a key that is only the digest: 401.
    let resp = client
        .get(app.url(&format!("/v1/images/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client
        .get(app.url(&format!("/v1/images/{id}")))
        .bearer_auth(digest(reader))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    wait_processed_as(&client, &app, reader, &id).await;

    let delete = |key: &'static str| {
        client
            .delete(app.url(&format!("/v1/images/{id}")))
            .bearer_auth(key)
            .send()
    };
    for key in [reader, writer, ops] {
        let resp = delete(key).await.unwrap();
        assert_eq!(resp.status(), 403, "{key} may not erase");
        assert_eq!(resp.json::<Value>().await.unwrap()["error"], "forbidden");
    }
    let (status, _) = get_as(&client, &app, reader, &format!("/v1/images/{id}")).await;
    assert_eq!(status, 200, "a refused erasure erased nothing");
    assert_eq!(delete(eraser).await.unwrap().status(), 204);
    let (status, _) = get_as(&client, &app, reader, &format!("/v1/images/{id}")).await;
    assert_eq!(status, 404);
    // The eraser cannot read.
    let (status, _) = get_as(&client, &app, eraser, "/v1/images?limit=1").await;
    assert_eq!(status, 403);

    let resp = client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client
        .get(app.url("/metrics"))
        .bearer_auth(reader)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = client
        .get(app.url("/metrics"))
        .bearer_auth(ops)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("imgpipe_uploads_total"));

    let resp = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        serde_json::json!({ "status": "ok" }),
        "healthz says more than ok: {text}"
    );
    app.stop();
}

/// A client's Idempotency-Key lives in its own namespace: `content:<sha>`
/// cannot plant a content-index record that makes another image answer
/// for those bytes.
#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_cannot_reach_internal_records_or_other_principals() {
    let dir = tempfile::tempdir().unwrap();
    let app = Imgpipe::start(&dir.path().join("lake"), &[]);
    let client = client();
    let other = corpus()
        .into_iter()
        .find(|c| c.file == "mate_Storm.jpg")
        .unwrap();
    let resp = client
        .post(app.url("/v1/images"))
        .header("Idempotency-Key", format!("content:{}", other.sha256))
        .body(std::fs::read(corpus_dir().join("skimage_camera.png")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let planted = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = status(&client, &app, &planted).await;
    assert!(v["status"].is_string(), "{v}");
    let resp = client
        .get(app.url(&format!("/v1/images?sha256={}", other.sha256)))
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["images"].as_array().unwrap().is_empty(),
        "an Idempotency-Key planted a content-index record: {v}"
    );
    let records = files_under(&dir.path().join("lake").join("idempotency"));
    let content_prefix =
        lake::layout::idempotency_prefix(&lake::layout::content_index_key(&other.sha256));
    let content_dir = content_prefix
        .trim_start_matches("idempotency/")
        .trim_end_matches('/');
    assert!(
        !records.iter().any(|r| r.starts_with(content_dir)),
        "{records:?}"
    );
    app.stop();
}

/// Two callers mapped to one principal (two keys, or many users of the
/// web app's identity provider behind one default principal) do not share
/// Idempotency-Keys: neither can learn that the other used a key (the 422)
/// nor take one first.
#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_are_each_callers_own() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = ("alice-key-0123456789ab", "bob-key-0123456789abcd");
    let cfg = config_file(
        dir.path(),
        &format!("[api]\napi_keys = [\"{alice}\", \"{bob}\"]\n"),
    );
    let app = Imgpipe::start_with_args(&dir.path().join("lake"), &[], &["--config", &cfg]);
    let client = client();
    let upload = |key: &'static str, file: &'static str| {
        let client = client.clone();
        let url = app.url("/v1/images");
        async move {
            let resp = client
                .post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", "order-1")
                .body(std::fs::read(corpus_dir().join(file)).unwrap())
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = upload(alice, "mate_Storm.jpg").await;
    assert_eq!(status, 202, "{first}");
    let (status, other) = upload(bob, "skimage_camera.png").await;
    assert_eq!(status, 202, "bob's key collided with alice's: {other}");
    assert_ne!(first["id"], other["id"]);
    // Each one's retry still finds its own image.
    let (status, again) = upload(alice, "mate_Storm.jpg").await;
    assert_eq!((status, &again["id"]), (202, &first["id"]), "{again}");
    let (status, again) = upload(bob, "skimage_camera.png").await;
    assert_eq!((status, &again["id"]), (202, &other["id"]), "{again}");
    app.stop();
}

/// Erasure on a versioned bucket: after the 204 no version or delete
/// marker of any of the image's keys is left, and no version of any
/// metadata file still holds its row (the pre-scrub file had its GPS).
#[tokio::test(flavor = "multi_thread")]
async fn erasure_on_a_versioned_bucket_leaves_no_version() {
    let Some((store, s3)) = s3_lake("erasev", "lake/").await else {
        return;
    };
    store.enable_versioning().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = s3_config_file(dir.path(), &s3);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[processor]\nflush_interval = \"1s\"\n");
    std::fs::write(&config, text).unwrap();
    let app = Imgpipe::start_with_args(dir.path(), &[], &["--config", config.to_str().unwrap()]);
    let client = client();
    let ids = upload_corpus(
        &client,
        &app,
        &[
            "skimage_camera.png",
            "lomiri16_Dragonfly_by_Bolly.jpg",
            "mate_Storm.jpg",
        ],
    )
    .await;
    for id in &ids {
        wait_final(&client, &app, id, Duration::from_secs(120)).await;
    }
    // The rows reach Parquet (a version holding the GPS row exists).
    let start = std::time::Instant::now();
    while metadata_rows(&store, &s3).await.len() < ids.len() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "rows not flushed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Erase the middle one (GPS) and the newest (its file is named after it).
    for erased in [&ids[1], &ids[2]] {
        let resp = client
            .delete(app.url(&format!("/v1/images/{erased}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
    }
    app.stop();

    let versions = store.list_versions("").await.unwrap();
    for erased in [&ids[1], &ids[2]] {
        let naming: Vec<_> = versions
            .iter()
            .filter(|v| v.key.contains(erased.as_str()) && !v.key.starts_with("erased/"))
            .collect();
        assert!(
            naming.is_empty(),
            "versions naming {erased} left: {naming:?}"
        );
    }
    let rows = metadata_rows(&store, &s3).await;
    let left: Vec<String> = rows.iter().map(|r| r.id.to_string()).collect();
    assert!(
        left.contains(&ids[0]),
        "the neighbour's row is gone: {left:?}"
    );
    for erased in [&ids[1], &ids[2]] {
        assert!(
            !left.contains(erased),
            "a version still holds {erased}'s row"
        );
    }
    assert!(
        rows.iter().all(|r| r.gps_lat.is_none()),
        "GPS survives in a version"
    );
}

/// Every row in every version (current or not) of every metadata file.
async fn metadata_rows(
    store: &lake::store::S3Store,
    s3: &lake::config::S3Config,
) -> Vec<lake::schema::MetadataRow> {
    let mut rows = Vec::new();
    for v in store.list_versions("metadata/").await.unwrap() {
        if v.delete_marker {
            continue;
        }
        let mut get = store
            .sdk_client()
            .get_object()
            .bucket(&s3.bucket)
            .key(format!("{}{}", s3.prefix, v.key));
        if let Some(version) = &v.version_id {
            get = get.version_id(version);
        }
        let body = get.send().await.unwrap().body.collect().await.unwrap();
        rows.extend(lake::schema::read_rows(body.into_bytes()).unwrap());
    }
    rows
}

/// A hostile script: it hunts for imgpipe's secrets in every process's
/// environment, connects to a listener on this machine, writes beside the
/// lake and lists it, leaves a `setsid` grandchild behind that holds its
/// stdout, and links an output to a file outside. None of it succeeds, the
/// run ends within its timeout, and no process of it survives.
#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_script_gets_nothing_and_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let planted = dir.path().join("planted.txt");
    let marker = format!("62.{}", std::process::id());
    let script = dir.path().join("hostile.py");
    std::fs::write(
        &script,
        format!(
            r#"import glob, json, os, socket, subprocess, sys
req = json.load(sys.stdin)
got = []
for path in glob.glob('/proc/*/environ'):
    try:
        if b'do-not-leak' in open(path, 'rb').read():
            got.append('secret in ' + path)
    except OSError:
        pass
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=2)
    got.append('network')
except OSError:
    pass
# The sandbox's own /tmp takes this; the host's must not see it.
try:
    open('{planted}', 'w').write('x')
except OSError:
    pass
try:
    got.append('listed the lake: %d' % len(os.listdir('{lake}')))
except OSError:
    pass
subprocess.Popen(['setsid', 'sh', '-c', 'sleep {marker}'], stdout=sys.stdout, start_new_session=True)
os.symlink('/etc/hostname', os.path.join(req['out_dir'], 'host'))
print(json.dumps({{'got': got}}), flush=True)
"#,
            planted = planted.display(),
            lake = lake.display(),
        ),
    )
    .unwrap();
    let config = dir.path().join("imgpipe.toml");
    std::fs::write(
        &config,
        format!(
            "[processor.script]\ncommand = [\"python3\", \"{}\"]\ntimeout = \"20s\"\nretries = 0\n",
            script.display()
        ),
    )
    .unwrap();
    let app = Imgpipe::start_with_args(
        &lake,
        &[("AWS_SECRET_ACCESS_KEY", "do-not-leak")],
        &["--config", config.to_str().unwrap()],
    );
    let client = client();
    let started = std::time::Instant::now();
    let (_, body) = upload(
        &client,
        &app,
        std::fs::read(corpus_dir().join("skimage_camera.png")).unwrap(),
    )
    .await;
    let id = body["id"].as_str().unwrap().to_owned();
    let v = wait_final(&client, &app, &id, Duration::from_secs(60)).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the run outlasted its timeout"
    );
    app.stop();
    assert_eq!(v["status"], "processed", "{v}");
    let got = v["metadata"]["script"]["got"].as_array().unwrap();
    assert!(got.is_empty(), "the script got: {got:?}");
    assert!(!planted.exists(), "the script wrote outside its directory");
    assert!(
        !crate::script::process_with_marker_alive(&marker),
        "the setsid grandchild survived"
    );
    let id: lake::ImageId = id.parse().unwrap();
    let stored = files_under(&lake.join(lake::layout::derived_prefix(id)));
    assert!(!stored.iter().any(|f| f.contains("host")), "{stored:?}");
    drop(listener);
}

/// A crash can leave a script run's private copy of an image in the
/// scratch dir: the audit reports it and the sweeper removes it once no
/// live run can own it.
#[test]
fn stale_script_scratch_is_audited_and_swept() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("scratch");
    let left = scratch.join("run-crashed");
    std::fs::create_dir_all(&left).unwrap();
    std::fs::write(left.join("image.jpeg"), b"pixels").unwrap();
    let fresh = scratch.join("run-live");
    std::fs::create_dir_all(&fresh).unwrap();
    let status = std::process::Command::new("touch")
        .args(["-d", "3 hours ago"])
        .arg(&left)
        .status()
        .unwrap();
    assert!(status.success());
    let config = config_file(
        dir.path(),
        &format!(
            "[processor.script]\ncommand = [\"python3\", \"x.py\"]\nscratch_dir = \"{}\"\n",
            scratch.display()
        ),
    );
    let lake = dir.path().join("lake");
    let lake = lake.to_str().unwrap();
    let (ok, out, _) = cli(&["audit", "--config", &config, "--data-dir", lake]);
    assert!(!ok && out.contains("run-crashed"), "{out}");
    assert!(!out.contains("run-live"), "{out}");
    let (ok, out, err) = cli(&["sweep", "--once", "--config", &config, "--data-dir", lake]);
    assert!(ok, "{out}{err}");
    assert!(!left.exists() && fresh.exists());
    let (ok, out, _) = cli(&["audit", "--config", &config, "--data-dir", lake]);
    assert!(ok, "{out}");
}

/// A listing range is clamped to what can exist (the retention period up
/// to now): `to=9999-12-31` is an ordinary request, not a LIST per hour
/// until the request times out.
#[tokio::test(flavor = "multi_thread")]
async fn a_listing_to_the_far_future_is_clamped() {
    let dir = tempfile::tempdir().unwrap();
    let app = Imgpipe::start(&dir.path().join("lake"), &[]);
    let resp = client()
        .get(app.url("/v1/images?from=0001-01-01T00:00:00Z&to=9999-12-31T00:00:00Z"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(v["images"].as_array().unwrap().is_empty(), "{v}");
    app.stop();
}
