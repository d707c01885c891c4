//! TLS and SASL/SCRAM to a real broker, the shape of MSK's `SASL_SSL`
//! listener: a private tansu that requires SCRAM-SHA-512, behind a TLS
//! terminator (socat) with a certificate this test makes with openssl.
//! imgpipe reaches it only through its `[kafka]` security settings.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rdkafka::{ClientConfig, producer::FutureProducer};

use super::{create_topic_with, kafka_env, names, photos, produce, sha256, wait_one_final};
use crate::common::{self, Imgpipe};

const USER: &str = "imgpipe";
const PASSWORD: &str = "scram-secret-for-the-test";

/// tansu (from `.ci/run`), socat and openssl; `None` skips (fails in CI).
pub(super) fn tools() -> Option<String> {
    let tansu = std::env::var("IMGPIPE_TEST_TANSU")
        .ok()
        .filter(|t| !t.is_empty());
    let on_path = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    match tansu {
        Some(t) if on_path("socat") && on_path("openssl") => Some(t),
        _ => {
            assert!(
                std::env::var_os("IMGPIPE_REQUIRE_SERVERS").is_none(),
                "IMGPIPE_TEST_TANSU, socat or openssl is missing but IMGPIPE_REQUIRE_SERVERS is set"
            );
            eprintln!(
                "skipping: IMGPIPE_TEST_TANSU, socat or openssl missing (run `bash .ci/run`)"
            );
            None
        }
    }
}

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, child: &mut Child) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "server on {port} exited"
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills its processes when the test ends, however it ends.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(super) fn tansu(
    bin: &str,
    dir: &Path,
    port: u16,
    advertised: &str,
    authentication: bool,
) -> Child {
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir)
        .args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{port}"),
        ])
        .args(["--advertised-listener-url", advertised])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if authentication {
        cmd.arg("--authentication");
    }
    let mut child = cmd.spawn().unwrap();
    wait_listening(port, &mut child);
    child
}

/// A broker that takes only SCRAM-SHA-512 over TLS at `localhost:<port>`,
/// and the CA file that signed its certificate.
fn secure_broker(tansu_bin: &str, dir: &Path) -> (Servers, String, String) {
    let ok = Command::new("openssl")
        .current_dir(dir)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "openssl could not make a certificate");
    let (inner, outer) = (free_port(), free_port());
    let advertised = format!("tcp://localhost:{outer}");
    // Users live in the broker's store: create one before requiring it.
    let mut open = tansu(tansu_bin, dir, inner, &advertised, false);
    let created = Command::new(tansu_bin)
        .args([
            "user",
            "create",
            "--broker",
            &format!("tcp://127.0.0.1:{inner}"),
        ])
        .args(["--mechanism", "scram512", USER, PASSWORD])
        .status()
        .unwrap();
    open.kill().unwrap();
    open.wait().unwrap();
    assert!(created.success(), "tansu user create failed");
    let broker = tansu(tansu_bin, dir, inner, &advertised, true);
    let mut tls = Command::new("socat")
        .current_dir(dir)
        .arg(format!(
            "OPENSSL-LISTEN:{outer},bind=127.0.0.1,reuseaddr,fork,cert=cert.pem,key=key.pem,verify=0"
        ))
        .arg(format!("TCP:127.0.0.1:{inner}"))
        // Its complaints about the refused handshakes are expected.
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(outer, &mut tls);
    let ca = dir.join("cert.pem").to_string_lossy().into_owned();
    (Servers(vec![broker, tls]), format!("localhost:{outer}"), ca)
}

fn secure_client(brokers: &str, ca: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("security.protocol", "sasl_ssl")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", USER)
        .set("sasl.password", PASSWORD)
        .set("ssl.ca.location", ca)
        .set("message.max.bytes", "16777216");
    c
}

fn secure_env(
    brokers: &str,
    topic: &str,
    group: &str,
    ca: &str,
    password: &str,
) -> Vec<(String, String)> {
    let mut env = kafka_env(brokers, topic, group);
    env.extend(
        [
            ("IMGPIPE_KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("IMGPIPE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("IMGPIPE_KAFKA_SASL_USERNAME", USER),
            ("IMGPIPE_KAFKA_SASL_PASSWORD", password),
            ("IMGPIPE_KAFKA_SSL_CA_LOCATION", ca),
            ("IMGPIPE_KAFKA__TIMEOUT", "10s"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bridge_speaks_tls_and_scram_to_a_broker_that_requires_them() {
    let Some(tansu_bin) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_servers, brokers, ca) = secure_broker(&tansu_bin, dir.path());
    let (topic, group) = names("secure");
    let client_config = secure_client(&brokers, &ca);
    create_topic_with(&client_config, &topic, 1, Some(super::SIX_DAYS_MS)).await;

    // A wrong password, or a CA that did not sign the broker's
    // certificate, stops the bridge at start with an error (no password
    // in it), instead of running without a broker.
    let lake = dir.path().join("lake");
    let lake_arg = lake.to_string_lossy().into_owned();
    for (password, ca_file, why, reason) in [
        (
            "wrong-password",
            ca.as_str(),
            "wrong password",
            "SASL authentication",
        ),
        (
            PASSWORD,
            "/etc/ssl/certs/ca-certificates.crt",
            "untrusted certificate",
            "certificate verify failed",
        ),
    ] {
        let env = secure_env(&brokers, &topic, &group, ca_file, password);
        let out = Command::new(env!("CARGO_BIN_EXE_imgpipe"))
            .args(["bridge", "--data-dir", &lake_arg])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{why}: the bridge started: {stderr}");
        // The password this run passed, whichever it was, never shows.
        assert!(
            !stderr.contains(password),
            "{why}: the password is in the output"
        );
        // …and the refusal is the broker's reason, not any start-up failure.
        assert!(
            stderr.contains(reason),
            "{why}: the error does not say {reason:?}: {}",
            stderr.split("Stack backtrace").next().unwrap_or_default()
        );
    }

    let env = secure_env(&brokers, &topic, &group, &ca, PASSWORD);
    let refs = super::as_refs(&env);
    let app = Imgpipe::start(&lake, &refs);
    let photo = photos(4 << 20, 1).remove(0);
    let producer: FutureProducer = client_config.create().unwrap();
    produce(&producer, &topic, Some("secure-1"), &photo.bytes).await;
    let img = wait_one_final(&common::client(), &app, &sha256(&photo.bytes)).await;
    assert_eq!(img["status"], "processed", "{img}");
    assert_eq!(img["metadata"]["source"], "kafka", "{img}");
    app.stop();
}
