//! The customer's script, end to end through `imgpipe up`: the example in
//! both modes over the whole corpus, and every way a script can misbehave.
#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use crate::common::*;
use serde_json::Value;

/// Start `imgpipe up` with `[processor.script]` = `script_toml`, upload
/// `images`, and return each image's final status.
async fn run_images(dir: &Path, script_toml: &str, images: &[Vec<u8>]) -> Vec<Value> {
    let config = dir.join("imgpipe.toml");
    std::fs::write(&config, format!("[processor.script]\n{script_toml}\n")).unwrap();
    let data = dir.join("lake");
    let app = Imgpipe::start_with_args(&data, &[], &["--config", config.to_str().unwrap()]);
    let client = client();
    let mut ids = Vec::new();
    for bytes in images {
        let (status, body) = upload(&client, &app, bytes.clone()).await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let mut out = Vec::new();
    for id in &ids {
        out.push(wait_final(&client, &app, id, Duration::from_secs(300)).await);
    }
    app.stop();
    out
}

fn python_script(dir: &Path, name: &str, source: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, source).unwrap();
    format!("[\"python3\", \"{}\"]", path.display())
}

fn corpus_bytes() -> Vec<Vec<u8>> {
    corpus()
        .iter()
        .map(|c| std::fs::read(&c.path).unwrap())
        .collect()
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/example.py")
        .display()
        .to_string()
}

async fn example_fields_for_every_corpus_image(mode: &str, command: String) {
    let dir = tempfile::tempdir().unwrap();
    let statuses = run_images(
        dir.path(),
        &format!("command = {command}\nmode = \"{mode}\""),
        &corpus_bytes(),
    )
    .await;
    for (img, v) in corpus().iter().zip(&statuses) {
        assert_eq!(v["status"], "processed", "{}: {v}", img.file);
        let fields = &v["metadata"]["script"];
        for key in [
            "brightness",
            "contrast",
            "sharpness",
            "colourfulness",
            "dominant_colours",
        ] {
            assert!(
                !fields[key].is_null(),
                "{}: {key} missing in {fields}",
                img.file
            );
        }
        let b = fields["brightness"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&b), "{}: brightness {b}", img.file);
    }
    // The greyscale photo has no colour; the colourful ones do.
    let grey = corpus()
        .iter()
        .position(|c| c.file == "skimage_camera.png")
        .unwrap();
    assert!(
        statuses[grey]["metadata"]["script"]["colourfulness"]
            .as_f64()
            .unwrap()
            < 1.0
    );
    // Rows carry the fields and the script version; output files are stored.
    let rows = parquet_rows(&dir.path().join("lake"));
    assert_eq!(rows.len(), statuses.len());
    for row in &rows {
        let fields: Value = serde_json::from_str(row.script.as_deref().unwrap()).unwrap();
        assert!(fields["sharpness"].is_number());
        assert_eq!(row.script_version.as_deref().map(str::len), Some(16));
        let histogram = dir
            .path()
            .join("lake")
            .join(lake::layout::script_key(row.id, "histogram.json"));
        assert!(histogram.is_file(), "{}", histogram.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn example_script_per_image_mode() {
    example_fields_for_every_corpus_image("per-image", format!("[\"python3\", \"{}\"]", example()))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn example_script_stream_mode() {
    example_fields_for_every_corpus_image(
        "stream",
        format!("[\"python3\", \"{}\", \"--stream\"]", example()),
    )
    .await;
}

fn small_images() -> Vec<Vec<u8>> {
    [
        "skimage_camera.png",
        "mate_FreshFlower.jpg",
        "webp_mate_GreenMeadow.webp",
    ]
    .iter()
    .map(|n| std::fs::read(corpus_dir().join(n)).unwrap())
    .collect()
}

async fn all_quarantined(source: &str, extra: &str, reason: &str, mention: &str) {
    let dir = tempfile::tempdir().unwrap();
    let command = python_script(dir.path(), "bad.py", source);
    let statuses = run_images(
        dir.path(),
        &format!("command = {command}\n{extra}"),
        &small_images(),
    )
    .await;
    for v in statuses {
        assert_eq!(v["status"], "quarantined", "{v}");
        let why = v["reason"].as_str().unwrap();
        assert!(
            why.starts_with(reason) && why.contains(mention),
            "want {reason} mentioning {mention:?}: {why}"
        );
    }
}

/// The quarantine record of `id` in the filesystem lake at `lake`.
fn quarantine_record(lake: &Path, id: &str) -> Value {
    let id: lake::ImageId = id.parse().unwrap();
    let path = lake.join(lake::layout::quarantine_key(id));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// The script's stderr is kept for the operator in the quarantine record,
/// and never shown over HTTP: a script can echo image content there.
#[tokio::test(flavor = "multi_thread")]
async fn a_script_that_fails_is_quarantined_with_its_stderr_kept_off_http() {
    let dir = tempfile::tempdir().unwrap();
    let command = python_script(
        dir.path(),
        "bad.py",
        "import sys\nsys.stderr.write('boom: cannot handle this\\n')\nsys.exit(3)\n",
    );
    let statuses = run_images(
        dir.path(),
        &format!("command = {command}\nretries = 0"),
        &small_images(),
    )
    .await;
    for v in statuses {
        let why = v["reason"].as_str().unwrap();
        assert!(
            why.starts_with("script_failed") && why.contains("exit status: 3"),
            "{why}"
        );
        assert!(!why.contains("boom"), "script output over HTTP: {why}");
        let record = quarantine_record(&dir.path().join("lake"), v["id"].as_str().unwrap());
        assert!(
            record["script_output"]
                .as_str()
                .unwrap()
                .contains("boom: cannot handle this"),
            "{record}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_that_hangs_is_killed_at_the_timeout() {
    all_quarantined(
        "import time\ntime.sleep(60)\n",
        "timeout = \"1s\"\nretries = 0",
        "script_timeout",
        "1s",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_that_prints_garbage_is_refused() {
    all_quarantined(
        "print('this is not json')\n",
        "retries = 0",
        "script_bad_output",
        "JSON",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_that_prints_100_mb_is_stopped() {
    all_quarantined(
        "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 1_000_000)\n",
        "retries = 0\nmax_output_bytes = 65536",
        "script_bad_output",
        "more than 65536 bytes",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_worker_that_crashes_is_replaced_and_other_images_flow() {
    let dir = tempfile::tempdir().unwrap();
    // Dies on PNGs, answers everything else.
    let command = python_script(
        dir.path(),
        "crashy.py",
        "import json, os, sys\n\
         for line in sys.stdin:\n\
         \x20   req = json.loads(line)\n\
         \x20   if req['metadata']['format'] == 'png':\n\
         \x20       sys.stderr.write('worker fell over\\n'); sys.stderr.flush(); os._exit(1)\n\
         \x20   print(json.dumps({'id': req['id'], 'ok': True, 'fields': {'w': req['metadata']['width']}}), flush=True)\n",
    );
    let mut images = small_images();
    images.extend(small_images());
    let statuses = run_images(
        dir.path(),
        &format!("command = {command}\nmode = \"stream\"\nconcurrency = 1"),
        &images,
    )
    .await;
    for v in &statuses {
        let png = v["status"] == "quarantined";
        if png {
            let why = v["reason"].as_str().unwrap();
            assert!(why.starts_with("script_failed"), "{why}");
            assert!(!why.contains("fell over"), "script output over HTTP: {why}");
            let record = quarantine_record(&dir.path().join("lake"), v["id"].as_str().unwrap());
            assert!(
                record["script_output"]
                    .as_str()
                    .unwrap()
                    .contains("worker fell over"),
                "{record}"
            );
        } else {
            assert_eq!(v["status"], "processed", "{v}");
            assert!(v["metadata"]["script"]["w"].is_number());
        }
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|v| v["status"] == "quarantined")
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_worker_that_answers_garbage_or_hangs_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let command = python_script(
        dir.path(),
        "odd.py",
        "import json, sys, time\n\
         for line in sys.stdin:\n\
         \x20   req = json.loads(line)\n\
         \x20   fmt = req['metadata']['format']\n\
         \x20   if fmt == 'png': print('garbage', flush=True)\n\
         \x20   elif fmt == 'webp': time.sleep(60)\n\
         \x20   else: print(json.dumps({'id': req['id'], 'ok': True, 'fields': {}}), flush=True)\n",
    );
    let statuses = run_images(
        dir.path(),
        &format!("command = {command}\nmode = \"stream\"\ntimeout = \"1s\"\nretries = 0"),
        &small_images(),
    )
    .await;
    let reasons: Vec<&str> = statuses
        .iter()
        .map(|v| v["reason"].as_str().unwrap_or("processed"))
        .collect();
    assert!(reasons[0].starts_with("script_bad_output"), "{reasons:?}");
    assert_eq!(reasons[1], "processed");
    assert!(reasons[2].starts_with("script_timeout"), "{reasons:?}");
}

/// Is any process on the machine running with `marker` in its command line?
pub fn process_with_marker_alive(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let dir = e.path();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).contains(marker) && !stat.contains(") Z ")
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn children_a_script_leaves_behind_are_killed() {
    let dir = tempfile::tempdir().unwrap();
    // The script starts a child that would sleep for a minute (its command
    // line carries a marker the test looks for) and answers at once.
    let marker = format!("61.{}", std::process::id());
    let command = python_script(
        dir.path(),
        "forky.py",
        &format!(
            "import json, subprocess\n\
             child = subprocess.Popen(['sleep', '{marker}'])\n\
             print(json.dumps({{'child': child.pid}}))\n"
        ),
    );
    let statuses = run_images(dir.path(), &format!("command = {command}"), &small_images()).await;
    for v in &statuses {
        assert_eq!(v["status"], "processed", "the answer was complete: {v}");
    }
    assert!(
        !process_with_marker_alive(&marker),
        "a child of the script outlived it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scripts_run_concurrently_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    // Each run reports when it started and ended (the sandbox lets it
    // write nowhere the test could read).
    let command = python_script(
        dir.path(),
        "slow.py",
        "import json, time\n\
         start = time.time()\n\
         time.sleep(0.5)\n\
         print(json.dumps({'start': start, 'end': time.time()}))\n",
    );
    let mut images = Vec::new();
    for _ in 0..3 {
        images.extend(small_images());
    }
    let statuses = run_images(
        dir.path(),
        &format!("command = {command}\nconcurrency = 4"),
        &images,
    )
    .await;
    assert!(statuses.iter().all(|v| v["status"] == "processed"));
    let mut events: Vec<(f64, i32)> = statuses
        .iter()
        .flat_map(|v| {
            let fields = &v["metadata"]["script"];
            [
                (fields["start"].as_f64().unwrap(), 1),
                (fields["end"].as_f64().unwrap(), -1),
            ]
        })
        .collect();
    events.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (mut running, mut most) = (0, 0);
    for (_, delta) in events {
        running += delta;
        most = most.max(running);
    }
    assert!(
        (3..=4).contains(&most),
        "at most {most} scripts ran at once; want up to 4"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_script_sees_only_allowed_environment() {
    let dir = tempfile::tempdir().unwrap();
    let command = python_script(
        dir.path(),
        "env.py",
        "import json, os\nassert 'do-not-leak' not in os.environ.values()\nfds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\nprint(json.dumps({'env': sorted(os.environ), 'fds': fds}))\n",
    );
    let config = dir.path().join("imgpipe.toml");
    std::fs::write(
        &config,
        format!("[processor.script]\ncommand = {command}\n"),
    )
    .unwrap();
    let app = Imgpipe::start_with_args(
        &dir.path().join("lake"),
        &[("AWS_SECRET_ACCESS_KEY", "do-not-leak")],
        &["--config", config.to_str().unwrap()],
    );
    let client = client();
    let (_, body) = upload(&client, &app, small_images().remove(0)).await;
    let v = wait_final(
        &client,
        &app,
        body["id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    let env: Vec<String> = serde_json::from_value(v["metadata"]["script"]["env"].clone()).unwrap();
    assert!(
        !env.iter()
            .any(|k| k.starts_with("AWS") || k.starts_with("IMGPIPE")),
        "{env:?}"
    );
    // No descriptor of ours is inherited: stdin, stdout, stderr, and the
    // one the script opened to list /proc/self/fd.
    let fds = v["metadata"]["script"]["fds"].as_array().unwrap().len();
    assert!(
        fds <= 4,
        "the script inherited descriptors: {}",
        v["metadata"]["script"]["fds"]
    );
    // Only allow-listed names come from us (a pyenv `python3` shim adds
    // its own PYENV_* variables); none of our secrets or settings.
    for ours in ["HOME", "USER", "CARGO_MANIFEST_DIR", "RUST_BACKTRACE"] {
        assert!(!env.iter().any(|k| k == ours), "{ours} leaked: {env:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_swaps_the_script_for_new_images() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = python_script(dir.path(), "v1.py", "print('{\"v\": 1}')\n");
    let v2 = python_script(dir.path(), "v2.py", "print('{\"v\": 2}')\n");
    let config = dir.path().join("imgpipe.toml");
    std::fs::write(&config, format!("[processor.script]\ncommand = {v1}\n")).unwrap();
    let app = Imgpipe::start_with_args(
        &dir.path().join("lake"),
        &[],
        &["--config", config.to_str().unwrap()],
    );
    let client = client();
    let image = small_images().remove(1);
    let (_, first) = upload(&client, &app, image.clone()).await;
    let first = wait_final(
        &client,
        &app,
        first["id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(first["metadata"]["script"]["v"], 1);

    std::fs::write(&config, format!("[processor.script]\ncommand = {v2}\n")).unwrap();
    let pid = app.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    // The reload is asynchronous: new images pick it up within moments.
    let mut seen = None;
    for _ in 0..50 {
        let (_, body) = upload(&client, &app, image.clone()).await;
        let v = wait_final(
            &client,
            &app,
            body["id"].as_str().unwrap(),
            Duration::from_secs(60),
        )
        .await;
        if v["metadata"]["script"]["v"] == 2 {
            seen = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.is_some(), "SIGHUP did not load the new script");
    app.stop();
    let versions: std::collections::HashSet<String> = parquet_rows(&dir.path().join("lake"))
        .into_iter()
        .filter_map(|r| r.script_version)
        .collect();
    assert_eq!(
        versions.len(),
        2,
        "each script has its own version: {versions:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reprocess_replaces_fields_outputs_and_rows_once() {
    let dir = tempfile::tempdir().unwrap();
    let script = |v: u32| {
        format!(
            "import json, os, sys\n\
             req = json.load(sys.stdin)\n\
             open(os.path.join(req['out_dir'], 'v{v}.txt'), 'w').write('{v}')\n\
             print(json.dumps({{'v': {v}, 'asked': sorted(req['metadata'])}}))\n"
        )
    };
    let command = python_script(dir.path(), "script.py", &script(1));
    let config = dir.path().join("imgpipe.toml");
    std::fs::write(
        &config,
        format!("[processor]\nflush_interval = \"1s\"\n[processor.script]\ncommand = {command}\n"),
    )
    .unwrap();
    let lake_dir = dir.path().join("lake");
    let app = Imgpipe::start_with_args(&lake_dir, &[], &["--config", config.to_str().unwrap()]);
    let client = client();
    let mut ids = Vec::new();
    for bytes in small_images() {
        let (_, body) = upload(&client, &app, bytes).await;
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let mut first_asked = Vec::new();
    for id in &ids {
        let v = wait_final(&client, &app, id, Duration::from_secs(60)).await;
        first_asked.push(v["metadata"]["script"]["asked"].clone());
    }
    app.stop();
    assert!(
        first_asked[0].as_array().unwrap().len() >= 13,
        "{first_asked:?}"
    );
    // Rows must have settled (two flush intervals) before they are replaced.
    tokio::time::sleep(Duration::from_secs(3)).await;

    python_script(dir.path(), "script.py", &script(2));
    let args = [
        "reprocess",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        lake_dir.to_str().unwrap(),
    ];
    let (ok, out, err) = cli(&args);
    assert!(ok, "{out}{err}");
    assert!(out.contains("reprocessed 3 of 3"), "{out}");
    let rows = parquet_rows(&lake_dir);
    assert_eq!(rows.len(), 3);
    for row in &rows {
        let fields: serde_json::Value =
            serde_json::from_str(row.script.as_deref().unwrap()).unwrap();
        assert_eq!(fields["v"], 2);
        // Reprocess asks the script the same request the first run did.
        assert_eq!(fields["asked"], first_asked[0], "{fields}");
        assert!(
            lake_dir
                .join(lake::layout::script_key(row.id, "v2.txt"))
                .is_file()
        );
        assert!(
            !lake_dir
                .join(lake::layout::script_key(row.id, "v1.txt"))
                .exists(),
            "old output left behind"
        );
        let manifest: lake::records::Manifest = serde_json::from_slice(
            &std::fs::read(lake_dir.join(lake::layout::manifest_key(row.id))).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest.row.script, row.script);
        assert!(manifest.keys.iter().any(|k| k.ends_with("v2.txt")));
        assert!(manifest.keys.last().unwrap().ends_with("manifest.json"));
    }
    // Idempotent: nothing left to do with the same script.
    let (ok, out, err) = cli(&args);
    assert!(ok, "{out}{err}");
    assert!(out.contains("reprocessed 0 of 0"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_outside_the_output_dir_change_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    // Overwrites its input image, writes beside its output dir and links
    // to a file outside it: none of that may reach the lake.
    let command = python_script(
        dir.path(),
        "rogue.py",
        "import json, os, sys\n\
         req = json.load(sys.stdin)\n\
         open(req['path'], 'wb').write(b'tampered')\n\
         open(os.path.join(req['out_dir'], '..', 'escaped.txt'), 'w').write('x')\n\
         os.symlink('/etc/passwd', os.path.join(req['out_dir'], 'passwd'))\n\
         open(os.path.join(req['out_dir'], 'ok.txt'), 'w').write('fine')\n\
         print('{}')\n",
    );
    let image = small_images().remove(1);
    let statuses = run_images(
        dir.path(),
        &format!("command = {command}"),
        std::slice::from_ref(&image),
    )
    .await;
    assert_eq!(statuses[0]["status"], "processed", "{}", statuses[0]);
    let lake_dir = dir.path().join("lake");
    let id: lake::ImageId = statuses[0]["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        std::fs::read(lake_dir.join(lake::layout::raw_key(id))).unwrap(),
        image
    );
    let stored: Vec<String> = files_under(&lake_dir.join(lake::layout::derived_prefix(id)));
    let mut stored = stored;
    stored.sort();
    assert_eq!(stored, vec!["manifest.json", "script/ok.txt", "thumb.jpg"]);
    // As every fault test ends: each image ended exactly once.
    let (ok, out, err) = cli(&["verify", "--data-dir", lake_dir.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
}
