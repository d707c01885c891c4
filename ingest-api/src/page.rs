//! The upload page at `/`: plain HTML and JavaScript (no build step),
//! served with a content security policy that allows only our own script
//! and, for direct uploads, PUTs to the lake's storage.

use std::sync::Arc;

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};

use crate::AppState;

const INDEX: &str = include_str!("../static/index.html");
const SCRIPT: &str = include_str!("../static/app.js");

pub(crate) async fn index(State(state): State<Arc<AppState>>) -> Response {
    let html = INDEX
        .replace(
            "{{DIRECT_THRESHOLD}}",
            &state.config.direct_uploads.page_threshold_bytes.to_string(),
        )
        .replace("{{RETENTION}}", &retention_words(state.layout.retention));
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' blob:; \
         connect-src 'self' {}; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
        state.upload_origin.as_deref().unwrap_or("")
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
        html,
    )
        .into_response()
}

pub(crate) async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        SCRIPT,
    )
        .into_response()
}

fn retention_words(retention: chrono::Duration) -> String {
    match retention.num_hours() {
        h if h >= 48 && h % 24 == 0 => format!("{} days", h / 24),
        h if h >= 1 => format!("{h} hours"),
        _ => format!("{} minutes", retention.num_minutes().max(1)),
    }
}
