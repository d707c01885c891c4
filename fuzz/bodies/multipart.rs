/// `POST /v1/images` with a multipart body, through the real router on a
/// filesystem lake: any body is a 2xx or a JSON 4xx, never a panic or a 5xx.
pub fn run(data: &[u8]) {
    use std::sync::{Arc, OnceLock};

    struct Harness {
        runtime: tokio::runtime::Runtime,
        app: axum::Router,
        _lake: tempfile::TempDir,
    }
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    let h = HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let lake = tempfile::tempdir().expect("a temp dir");
        let app = runtime.block_on(async {
            let config = ingest_api::ApiConfig {
                max_upload_bytes: 1 << 20,
                max_files_per_request: 4,
                ..Default::default()
            };
            let store: lake::SharedStore =
                Arc::new(lake::store::FsStore::open(lake.path()).expect("an fs lake"));
            // Accepted images' events go nowhere: a closed channel's
            // sender would fail the upload, so keep the receiver alive
            // and drain it.
            let (tx, mut rx) = tokio::sync::mpsc::channel::<lake::ImageReceived>(1024);
            tokio::spawn(async move { while rx.recv().await.is_some() {} });
            let admission = lake::admission::Admission::new(
                store,
                Arc::new(lake::SystemClock),
                lake::config::RetentionConfig::default().layout(),
                Arc::new(tx),
            );
            let state = ingest_api::AppState::new(
                &config,
                &lake::config::LakeConfig::default(),
                admission,
                lake::InProgress::default(),
                policies::Policy::load(None).expect("the shipped policy"),
                None,
                None,
            );
            ingest_api::router(state)
        });
        Harness {
            runtime,
            app,
            _lake: lake,
        }
    });
    let request = axum::http::Request::post("/v1/images")
        .header("content-type", "multipart/form-data; boundary=X")
        .body(axum::body::Body::from(data.to_vec()))
        .expect("a request");
    let response = h.runtime.block_on(async {
        use tower::ServiceExt;
        h.app.clone().oneshot(request).await.expect("infallible")
    });
    let status = response.status();
    assert!(
        status.is_success() || status.is_client_error(),
        "{status} for a multipart body"
    );
}
