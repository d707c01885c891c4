//! The web app's front door against a real `imgpipe up`: CORS, bearer
//! tokens (JWT) beside API keys, rate limits, slow clients, TLS reloaded on
//! SIGHUP, direct uploads (filesystem and S3 lake), thumbnails, request ids
//! and the OpenAPI description.
#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::*;

/// Every permission, as the privacy officer.
const ADMIN_KEY: &str = "front-door-admin-key-0123456789";
/// Upload only.
const WRITER_KEY: &str = "front-door-writer-key-0123456789";
const ORIGIN: &str = "https://app.example.com";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");

fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A config with the two keys, plus `extra` TOML.
fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("imgpipe.toml");
    let text = format!(
        r#"
{extra}

[[api.keys]]
sha256 = "{}"
principal = "privacy-officer"
permissions = ["images:write", "images:read", "images:erase", "metrics:read"]

[[api.keys]]
sha256 = "{}"
principal = "analyst"
permissions = ["images:write"]
"#,
        digest(ADMIN_KEY),
        digest(WRITER_KEY)
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn start(dir: &Path, config: &Path) -> Imgpipe {
    let data = dir.join("lake");
    Imgpipe::start_with_args(&data, &[], &["--config", config.to_str().unwrap()])
}

fn jpeg() -> Vec<u8> {
    std::fs::read(corpus_dir().join(&corpus()[0].file)).unwrap()
}

async fn wait_processed(client: &reqwest::Client, app: &Imgpipe, key: &str, id: &str) -> Value {
    for _ in 0..600 {
        let v: Value = client
            .get(app.url(&format!("/v1/images/{id}")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["status"] == "processed" || v["status"] == "quarantined" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("image {id} not processed in 60 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_request_ids_and_thumbnails() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!("[api.cors]\nallowed_origins = [\"{ORIGIN}\"]\n"),
    );
    let log = dir.path().join("imgpipe.log");
    let app = Imgpipe::start_logging(
        &dir.path().join("lake"),
        &[
            ("IMGPIPE_LOG_FORMAT", "json"),
            ("IMGPIPE_LOG", "info,processor=debug"),
        ],
        &["--config", cfg.to_str().unwrap()],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let client = client();

    // The browser's preflight for an upload with a token and a key.
    let preflight = client
        .request(reqwest::Method::OPTIONS, app.url("/v1/images"))
        .header("Origin", ORIGIN)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type, idempotency-key",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], ORIGIN);
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for name in ["authorization", "content-type", "idempotency-key"] {
        assert!(allowed.contains(name), "{allowed}");
    }
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("DELETE")
    );
    // Another origin gets no grant.
    let other = client
        .request(reqwest::Method::OPTIONS, app.url("/v1/images"))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // A real cross-origin upload, carrying the client's request id.
    let response = client
        .post(app.url("/v1/images"))
        .header("Origin", ORIGIN)
        .header("x-request-id", "web-req-4711")
        .bearer_auth(ADMIN_KEY)
        .body(jpeg())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["access-control-allow-origin"], ORIGIN);
    assert_eq!(response.headers()["x-request-id"], "web-req-4711");
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Without one, the server makes one up; a forged log line is replaced.
    let plain = client.get(app.url("/healthz")).send().await.unwrap();
    assert!(plain.headers()["x-request-id"].to_str().unwrap().len() >= 32);
    let forged = client
        .get(app.url("/healthz"))
        .header("x-request-id", "a b")
        .send()
        .await
        .unwrap();
    assert_ne!(forged.headers()["x-request-id"], "a b");

    let v = wait_processed(&client, &app, ADMIN_KEY, &id).await;
    assert_eq!(v["status"], "processed", "{v}");

    // The thumbnail: a JPEG, never cached; the upload-only key may not read it.
    let thumb = client
        .get(app.url(&format!("/v1/images/{id}/thumbnail")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(thumb.status(), 200);
    assert_eq!(thumb.headers()["content-type"], "image/jpeg");
    assert_eq!(thumb.headers()["cache-control"], "no-store");
    let bytes = thumb.bytes().await.unwrap();
    assert_eq!(&bytes[..2], &[0xff, 0xd8]);
    let img = image::load_from_memory(&bytes).unwrap();
    assert!(img.width().max(img.height()) <= 256);
    let denied = client
        .get(app.url(&format!("/v1/images/{id}/thumbnail")))
        .bearer_auth(WRITER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let missing = client
        .get(app.url(&format!(
            "/v1/images/{}/thumbnail",
            lake::ImageId::new(chrono::Utc::now())
        )))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // HTTP metrics by route pattern (never the raw id) and status.
    let metrics = client
        .get(app.url("/metrics"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"imgpipe_http_requests_total{route="/v1/images/{id}/thumbnail",method="GET",status="403"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("imgpipe_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains("imgpipe_processing_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(!metrics.contains(&id));

    app.stop();
    // The request id is on the processor's lines for the image, too.
    let log = std::fs::read_to_string(&log).unwrap();
    let processor_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&id) && l.contains("\"image\""))
        .collect();
    assert!(
        !processor_lines.is_empty(),
        "no processor lines for {id}:\n{log}"
    );
    assert!(
        processor_lines.iter().any(|l| l.contains("web-req-4711")),
        "{processor_lines:?}"
    );
}

fn sign(claims: &Value) -> String {
    let pem = std::fs::read(format!("{FIXTURES}/test-issuer.key.pem")).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-2026".into());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

fn claims(sub: &str, scope: &str, exp_in: i64) -> Value {
    json!({
        "iss": "https://id.example.com/",
        "aud": "imgpipe",
        "sub": sub,
        "scope": scope,
        "exp": chrono::Utc::now().timestamp() + exp_in,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_bearer_tokens_beside_api_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            r#"[api.jwt]
issuer = "https://id.example.com/"
audience = "imgpipe"
jwks_file = "{FIXTURES}/jwks.json"
[api.jwt.principals]
"analyst" = "analyst"
"kafka-team-member" = "kafka-analyst"
"#
        ),
    );
    let app = start(dir.path(), &cfg);
    let client = client();

    // A web user's token: upload, then read it back.
    let user = sign(&claims("analyst", "openid images:write images:read", 300));
    let up = client
        .post(app.url("/v1/images"))
        .bearer_auth(&user)
        .body(jpeg())
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 202);
    let id = up.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = wait_processed(&client, &app, &user, &id).await;
    assert_eq!(v["status"], "processed");
    // The analyst principal's view: no restricted columns.
    assert!(v["metadata"].get("gps_lat").is_none(), "{v}");
    // The token grants no erasure.
    let erase = client
        .delete(app.url(&format!("/v1/images/{id}")))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(erase.status(), 403);
    assert_eq!(erase.json::<Value>().await.unwrap()["error"], "forbidden");
    // A mapped subject reads through its principal: kafka-analyst sees no HTTP image.
    let mapped = sign(&claims("kafka-team-member", "images:read", 300));
    let hidden = client
        .get(app.url(&format!("/v1/images/{id}")))
        .bearer_auth(&mapped)
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 404);
    // API keys still work beside tokens.
    let by_key = client
        .get(app.url(&format!("/v1/images/{id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(by_key.status(), 200);

    // Refused: each a 401 with a JSON body that says why.
    let expired = sign(&claims("analyst", "images:read", -3600));
    let mut wrong_issuer = claims("analyst", "images:read", 300);
    wrong_issuer["iss"] = json!("https://evil.example/");
    let mut wrong_audience = claims("analyst", "images:read", 300);
    wrong_audience["aud"] = json!("another-app");
    let public = std::fs::read(format!("{FIXTURES}/test-issuer.pub.pem")).unwrap();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some("test-2026".into());
    let confused = jsonwebtoken::encode(
        &hs_header,
        &claims("analyst", "images:read", 300),
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims("analyst", "images:read", 300))
    );
    for (what, token, says) in [
        ("expired", expired, "expired"),
        ("wrong issuer", sign(&wrong_issuer), "issuer"),
        ("wrong audience", sign(&wrong_audience), "audience"),
        ("HS256 keyed with the public key", confused, "HS256"),
        ("alg none", none, "malformed"),
    ] {
        let r = client
            .get(app.url(&format!("/v1/images/{id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{what}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized", "{what}");
        assert!(
            body["detail"].as_str().unwrap().contains(says),
            "{what}: {body}"
        );
    }
    // A subject no mapping names, and no default principal: refused.
    let stranger = sign(&claims("nobody-we-know", "images:read", 300));
    let r = client
        .get(app.url(&format!("/v1/images/{id}")))
        .bearer_auth(&stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_answer_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "[api.rate_limit]\nper_principal_per_second = 1\nper_principal_burst = 3\nper_ip_per_second = 1000\nper_ip_burst = 1000\n",
    );
    let app = start(dir.path(), &cfg);
    let client = client();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = client
            .get(app.url("/v1/images?limit=1"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let retry: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&retry), "{retry}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "rate_limited");
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    // Another caller has its own budget.
    let other = client
        .post(app.url("/v1/images"))
        .bearer_auth(WRITER_KEY)
        .body(jpeg())
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 202);

    // Per address, before any key is checked.
    let dir2 = tempfile::tempdir().unwrap();
    let cfg = config(
        dir2.path(),
        "[api.rate_limit]\nper_ip_per_second = 1\nper_ip_burst = 2\n",
    );
    let app = start(dir2.path(), &cfg);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = client
            .get(app.url("/v1/images"))
            .bearer_auth("not-a-key-at-all-0123456789")
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, vec![401, 401, 429, 429]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "[api]\nheader_read_timeout = \"1s\"\n");
    let app = start(dir.path(), &cfg);
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    // The server answers 408 or just closes; either way the read ends.
    let _ = slow.read_to_end(&mut buf);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the connection stayed open {took:?}"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.contains("200 OK"), "{text}");
    // Nor can one hold a connection by sending nothing at all, or only
    // part of the HTTP/2 preface (before any header timer would start).
    for opening in [&b""[..], &b"PRI * HTTP/2.0\r\n"[..]] {
        let mut idle = std::net::TcpStream::connect(&addr).unwrap();
        idle.write_all(opening).unwrap();
        idle.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        let _ = idle.read_to_end(&mut buf);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a silent connection stayed open {:?}",
            started.elapsed()
        );
    }
    // A normal client is still served.
    let ok = client().get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

/// After its requests a kept-alive connection is closed once idle for
/// `api.idle_timeout`; one address holds at most its share of connections.
#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed_and_one_address_cannot_take_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "[api]\nheader_read_timeout = \"30s\"\nidle_timeout = \"2s\"\nmax_connections_per_address = 3\n",
    );
    let app = start(dir.path(), &cfg);
    let addr = app.base.trim_start_matches("http://").to_owned();
    let get = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    // Three kept-alive connections, each served once.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        conn.write_all(get).unwrap();
        let mut buf = [0u8; 512];
        let n = conn.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
        held.push(conn);
    }
    // A fourth from the same address is closed unanswered.
    let mut fourth = std::net::TcpStream::connect(&addr).unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = fourth.write_all(get);
    let mut buf = Vec::new();
    let _ = fourth.read_to_end(&mut buf);
    assert!(
        !String::from_utf8_lossy(&buf).contains("200 OK"),
        "a fourth connection from one address was served"
    );
    // The idle ones are closed by the server: the read ends (EOF) well
    // before the client's own 30 s.
    let started = std::time::Instant::now();
    for mut conn in held {
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "idle connections stayed open {:?}",
        started.elapsed()
    );
    // Their slots are free again.
    let ok = client().get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

/// An HTTP/2 client that answers every PING and sends nothing else after
/// its request still loses its idle connection after `api.idle_timeout`.
/// (A minimal client on a raw socket: prior-knowledge HTTP/2, one GET.)
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_http2_connection_that_answers_pings_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "[api]\nheader_read_timeout = \"30s\"\nidle_timeout = \"2s\"\n",
    );
    let app = start(dir.path(), &cfg);
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend([kind, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    };
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    conn.write_all(&frame(4, 0, 0, &[])).unwrap();
    // GET /healthz: :method GET, :scheme http (static table), :path and
    // :authority as literals with indexed names.
    let mut headers = vec![0x82, 0x86, 0x04, 8];
    headers.extend(b"/healthz");
    headers.extend([0x01, 9]);
    headers.extend(b"127.0.0.1");
    conn.write_all(&frame(1, 0x5, 1, &headers)).unwrap();
    let mut answered: Option<std::time::Instant> = None;
    // The server's keep-alive pings, answered, would keep this loop going:
    // it ends at the server's close or at the test's own limit.
    while answered.is_none_or(|at| at.elapsed() < Duration::from_secs(20)) {
        let mut head = [0u8; 9];
        if conn.read_exact(&mut head).is_err() {
            break;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let mut payload = vec![0u8; len];
        if conn.read_exact(&mut payload).is_err() {
            break;
        }
        match kind {
            // SETTINGS: acknowledged, as a live client does.
            4 if flags & 1 == 0 => conn.write_all(&frame(4, 1, 0, &[])).unwrap(),
            // PING: answered, so keep-alive pings alone cannot close it.
            6 if flags & 1 == 0 => conn.write_all(&frame(6, 1, 0, &payload)).unwrap(),
            // The response's HEADERS: from here on the connection is idle.
            1 => {
                answered.get_or_insert_with(std::time::Instant::now);
            }
            // GOAWAY: the server is closing.
            7 => break,
            _ => {}
        }
    }
    let answered = answered.expect("the request was never answered");
    assert!(
        answered.elapsed() < Duration::from_secs(20),
        "an idle HTTP/2 connection stayed open {:?}",
        answered.elapsed()
    );
}

/// A self-signed certificate for 127.0.0.1, by the openssl CLI.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        // A server certificate, not a CA (rustls refuses a CA as the leaf).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl (installed by .ci/run)");
    assert!(status.success());
    (cert, key)
}

fn trusting(cert: &Path) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(cert).unwrap()).unwrap()])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_listener_reloads_its_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (first, first_key) = self_signed(dir.path(), "first");
    let (second, second_key) = self_signed(dir.path(), "second");
    let live_cert = dir.path().join("live.crt");
    let live_key = dir.path().join("live.key");
    std::fs::copy(&first, &live_cert).unwrap();
    std::fs::copy(&first_key, &live_key).unwrap();
    let cfg = config(dir.path(), "");
    let app = Imgpipe::start_with_args(
        &dir.path().join("lake"),
        &[],
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--tls-cert",
            live_cert.to_str().unwrap(),
            "--tls-key",
            live_key.to_str().unwrap(),
        ],
    );
    assert!(app.base.starts_with("https://"), "{}", app.base);
    let r = trusting(&first)
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Plain HTTP on the TLS port gets nowhere.
    let plain = client()
        .get(app.url("/healthz").replace("https://", "http://"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    assert!(
        trusting(&second)
            .get(app.url("/healthz"))
            .send()
            .await
            .is_err()
    );

    // Rotate: new files, SIGHUP, new connections see the new certificate.
    std::fs::copy(&second, &live_cert).unwrap();
    std::fs::copy(&second_key, &live_key).unwrap();
    let pid = app.child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let mut rotated = false;
    for _ in 0..50 {
        if trusting(&second)
            .get(app.url("/healthz"))
            .send()
            .await
            .is_ok()
        {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rotated, "the new certificate was not served after SIGHUP");
    assert!(
        trusting(&first)
            .get(app.url("/healthz"))
            .send()
            .await
            .is_err()
    );
    // A broken file on the next SIGHUP keeps the current certificate.
    std::fs::write(&live_cert, "not a certificate").unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = trusting(&second)
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop();
}

async fn direct_upload(
    client: &reqwest::Client,
    app: &Imgpipe,
    key: &str,
    bytes: Vec<u8>,
) -> (Value, reqwest::StatusCode) {
    let ticket: Value = client
        .post(app.url("/v1/uploads"))
        .bearer_auth(key)
        .json(&json!({ "bytes": bytes.len() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ticket["method"], "PUT", "{ticket}");
    let mut put = client.put(ticket["url"].as_str().unwrap()).body(bytes);
    for (name, value) in ticket["headers"].as_object().unwrap() {
        put = put.header(name, value.as_str().unwrap());
    }
    let put = put.send().await.unwrap();
    assert!(
        put.status().is_success(),
        "{}: {}",
        put.status(),
        put.text().await.unwrap()
    );
    let done = client
        .post(ticket["complete_url"].as_str().unwrap())
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (ticket, done.status())
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_uploads_on_the_filesystem_lake() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let app = start(dir.path(), &cfg);
    let client = client();
    let lake = dir.path().join("lake");

    let (ticket, status) = direct_upload(&client, &app, ADMIN_KEY, jpeg()).await;
    assert_eq!(status, 202);
    let upload_id = ticket["id"].as_str().unwrap();
    assert!(ticket["url"].as_str().unwrap().contains("signature="));
    // Completing again answers the same image.
    let again: Value = client
        .post(ticket["complete_url"].as_str().unwrap())
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = again["id"].as_str().unwrap().to_owned();
    let v = wait_processed(&client, &app, ADMIN_KEY, &id).await;
    assert_eq!(v["status"], "processed");
    assert_eq!(v["metadata"]["source_ref"], format!("upload:{upload_id}"));
    // The staged bytes are gone; only the small ticket waits for the sweeper.
    let staged: Vec<String> = files_under(&lake)
        .into_iter()
        .filter(|f| f.starts_with("uploads/"))
        .collect();
    assert!(
        staged.iter().all(|f| f.ends_with("/ticket.json")),
        "{staged:?}"
    );
    // A URL takes its bytes once: again, even after completion, is a 409.
    let reput = client
        .put(ticket["url"].as_str().unwrap())
        .body(jpeg())
        .send()
        .await
        .unwrap();
    assert_eq!(reput.status(), 409);
    assert_eq!(
        reput.json::<Value>().await.unwrap()["error"],
        "upload_already_put"
    );
    // …and of two PUTs racing with one URL, one stores.
    let racing: Value = client
        .post(app.url("/v1/uploads"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({ "bytes": jpeg().len() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let put = || {
        client
            .put(racing["url"].as_str().unwrap())
            .body(jpeg())
            .send()
    };
    let (a, b) = tokio::join!(put(), put());
    let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);

    // Not an image: 415, and nothing of it stays.
    let (ticket, status) = direct_upload(
        &client,
        &app,
        ADMIN_KEY,
        b"just some text, no image".to_vec(),
    )
    .await;
    assert_eq!(status, 415);
    let gone = ticket["id"].as_str().unwrap();
    assert!(files_under(&lake).iter().all(|f| !f.contains(gone)));

    // Someone else's upload does not exist for this caller; a forged or
    // stale URL is refused; completing before the PUT is a 409.
    let ticket: Value = client
        .post(app.url("/v1/uploads"))
        .bearer_auth(WRITER_KEY)
        .json(&json!({ "bytes": 10 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let early = client
        .post(ticket["complete_url"].as_str().unwrap())
        .bearer_auth(WRITER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), 409);
    assert_eq!(
        early.json::<Value>().await.unwrap()["error"],
        "upload_incomplete"
    );
    let foreign = client
        .post(ticket["complete_url"].as_str().unwrap())
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 404);
    let url = ticket["url"].as_str().unwrap();
    let forged = url.replace("bytes=10", "bytes=11");
    let r = client
        .put(&forged)
        .body(vec![0u8; 11])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client.put(url).body(vec![0u8; 11]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    // Over the size limit is refused before any URL is made.
    let r = client
        .post(app.url("/v1/uploads"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({ "bytes": 1u64 << 40 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = client
        .post(app.url("/v1/uploads"))
        .bearer_auth(ADMIN_KEY)
        .body("{\"bytes\": 10}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    // The unfinished upload is swept with the rest, once its two hours pass.
    let later = (chrono::Utc::now() + chrono::Duration::hours(3)).to_rfc3339();
    let (ok, out, err) = cli(&[
        "sweep",
        "--once",
        "--now",
        &later,
        "--data-dir",
        lake.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    let staged: Vec<String> = files_under(&lake)
        .into_iter()
        .filter(|f| f.starts_with("uploads/"))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
    // …while the image itself is kept for its week.
    assert!(
        files_under(&lake)
            .iter()
            .any(|f| f.starts_with("raw/") && f.contains(&id))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_uploads_on_an_s3_lake_use_presigned_urls() {
    let Some((_store, s3)) = s3_lake("direct", "lake/").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s3_cfg = s3_config_file(dir.path(), &s3);
    let text = std::fs::read_to_string(&s3_cfg).unwrap();
    let cfg = config(dir.path(), &text);
    let app = start(dir.path(), &cfg);
    let client = client();
    let (ticket, status) = direct_upload(&client, &app, ADMIN_KEY, jpeg()).await;
    let url = ticket["url"].as_str().unwrap();
    assert!(url.starts_with(s3.endpoint.as_deref().unwrap()), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert_eq!(status, 202);
    // The URL signed one length: another is refused by S3 itself.
    let (ticket, _) = {
        let t: Value = client
            .post(app.url("/v1/uploads"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({ "bytes": 100 }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (t, ())
    };
    let r = client
        .put(ticket["url"].as_str().unwrap())
        .body(vec![1u8; 200])
        .send()
        .await
        .unwrap();
    assert!(!r.status().is_success(), "{}", r.status());
    let done = client
        .post(ticket["complete_url"].as_str().unwrap())
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 409);
    app.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_in_the_openapi_spec_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let app = start(dir.path(), &cfg);
    let client = client();
    let spec: Value = client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = spec["paths"].as_object().unwrap();
    let mut seen = Vec::new();
    let id = lake::ImageId::new(chrono::Utc::now()).to_string();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let url = app.url(&path.replace("{id}", &id));
            let r = client
                .request(method.to_uppercase().parse().unwrap(), &url)
                .bearer_auth(ADMIN_KEY)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.text().await.unwrap();
            // The router's fallbacks: no such route, or not this method.
            assert!(
                !body.contains("no such endpoint") && status != 405,
                "{method} {path} is in the spec but not served: {status} {body}"
            );
            seen.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    seen.sort();
    // Every route the API serves is described (the page and the docs are
    // not API routes).
    for route in [
        "DELETE /v1/images/{id}",
        "GET /healthz",
        "GET /metrics",
        "GET /v1/images",
        "GET /v1/images/{id}",
        "GET /v1/images/{id}/thumbnail",
        "POST /v1/images",
        "POST /v1/uploads",
        "POST /v1/uploads/{id}/complete",
        "PUT /v1/uploads/{id}/data",
    ] {
        assert!(
            seen.contains(&route.to_owned()),
            "{route} missing from {seen:?}"
        );
    }
    let docs = client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
    let page = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
}

/// The identity provider's JWKS endpoint, played by the test: what it
/// serves can change (a key rotation), and it counts its fetches.
struct Jwks {
    body: std::sync::Arc<std::sync::Mutex<String>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    url: String,
}

async fn serve_jwks(initial: &str) -> Jwks {
    use axum::{Router, routing::get};
    let body = std::sync::Arc::new(std::sync::Mutex::new(initial.to_owned()));
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (b, f) = (body.clone(), fetches.clone());
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let (b, f) = (b.clone(), f.clone());
            async move {
                f.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let text = b.lock().unwrap().clone();
                ([("content-type", "application/json")], text)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Jwks { body, fetches, url }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_signing_key_is_fetched_from_the_jwks_url() {
    let jwks = serve_jwks(&std::fs::read_to_string(format!("{FIXTURES}/jwks.json")).unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "[api.jwt]\nissuer = \"https://id.example.com/\"\naudience = \"imgpipe\"\njwks_url = \"{}\"\njwks_refresh = \"1s\"\ndefault_principal = \"analyst\"\n",
            jwks.url
        ),
    );
    let app = start(dir.path(), &cfg);
    let fetched_at_start = jwks.fetches.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(fetched_at_start, 1);
    let client = client();
    let rotated = {
        let pem = std::fs::read(format!("{FIXTURES}/rotated.key.pem")).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("test-2027".into());
        jsonwebtoken::encode(
            &header,
            &claims("analyst", "images:read", 300),
            &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
        )
        .unwrap()
    };
    let get = |token: String| {
        let client = client.clone();
        let url = app.url("/v1/images?limit=1");
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // The old key works; the new one is not published yet.
    assert_eq!(get(sign(&claims("analyst", "images:read", 300))).await, 200);
    assert_eq!(get(rotated.clone()).await, 401);
    // A burst of unknown kids does not hammer the provider.
    for _ in 0..20 {
        assert_eq!(get(rotated.clone()).await, 401);
    }
    let fetches = jwks.fetches.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        fetches <= 3,
        "{fetches} JWKS fetches for 21 unknown-kid tokens"
    );
    // Published: after at most one refresh interval the new key is used.
    *jwks.body.lock().unwrap() =
        std::fs::read_to_string(format!("{FIXTURES}/jwks-rotated.json")).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(rotated).await, 200);
    assert_eq!(get(sign(&claims("analyst", "images:read", 300))).await, 200);
}
