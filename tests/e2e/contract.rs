//! The OpenAPI description checked by a real client: schemathesis (PyPI)
//! generates requests for every operation from `/openapi.json` and runs
//! them against a live `imgpipe up` with API keys configured. Every
//! response must match the spec (status, content type, headers, schema)
//! and no generated input may cause a 5xx.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use sha2::{Digest, Sha256};

use crate::common::*;

const KEY: &str = "contract-test-key-0123456789abcdef";

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_every_response_in_the_spec_and_no_5xx() {
    let Some(schemathesis) = required_tool("IMGPIPE_TEST_SCHEMATHESIS") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imgpipe.toml");
    std::fs::write(
        &config,
        format!(
            "[api.rate_limit]\nper_principal_per_second = 0\nper_ip_per_second = 0\n\n[[api.keys]]\nsha256 = \"{}\"\nprincipal = \"privacy-officer\"\npermissions = [\"images:write\", \"images:read\", \"images:erase\", \"metrics:read\"]\n",
            hex::encode(Sha256::digest(KEY.as_bytes()))
        ),
    )
    .unwrap();
    let app = Imgpipe::start_with_args(
        &dir.path().join("lake"),
        &[],
        &["--config", config.to_str().unwrap()],
    );
    let report = dir.path().join("report");
    let out = tokio::task::spawn_blocking({
        let spec = app.url("/openapi.json");
        let report = report.clone();
        let work = dir.path().to_owned();
        move || {
            Command::new(schemathesis)
                // It keeps a cache in its working directory.
                .current_dir(work)
                .arg("run")
                .arg(&spec)
                .args([
                    "--checks",
                    "not_a_server_error,status_code_conformance,content_type_conformance,\
                     response_headers_conformance,response_schema_conformance,ignored_auth,\
                     missing_required_header,unsupported_method",
                ])
                .args(["--header", &format!("Authorization: Bearer {KEY}")])
                .args(["--phases", "examples,coverage,fuzzing"])
                // One worker: schemathesis 4.32's coverage phase shares a
                // cache between workers that can race (a KeyError of its own).
                .args(["--max-examples", "50", "--workers", "1"])
                .args(["--request-timeout", "30", "--seed", "20261125"])
                .arg("--report-dir")
                .arg(&report)
                .args(["--report", "junit"])
                .env("NO_COLOR", "1")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It really ran every operation (its JUnit report names each).
    let junit: String = std::fs::read_dir(&report)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    for op in [
        "POST /v1/images",
        "GET /v1/images",
        "GET /v1/images/{id}",
        "DELETE /v1/images/{id}",
        "GET /v1/images/{id}/thumbnail",
        "POST /v1/uploads",
        "POST /v1/uploads/{id}/complete",
        "PUT /v1/uploads/{id}/data",
        "GET /healthz",
        "GET /metrics",
    ] {
        assert!(junit.contains(op), "{op} not exercised:\n{junit}");
    }
    app.stop();
}
