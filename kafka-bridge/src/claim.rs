//! Claim-check messages: the image waits in S3 (`s3://bucket/key`) because
//! it is larger than the broker's message limit; the bridge copies it into
//! `raw/`. The producer's object is left where it is — it is theirs.
//!
//! A claim-check is an untrusted pointer read with the bridge's own
//! credentials, so it may point only where `kafka.claim_check_allow` says,
//! never into the lake (a copy there would be a new image with a fresh
//! clock that erasure of the original does not reach), and it is read with
//! a cap, not whole.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use lake::{
    config::S3Config,
    store::{Capped, S3Store},
};
use tokio::sync::Mutex;

use crate::{
    KafkaConfig,
    message::{DeadLetterReason, Rejected, too_big},
};

#[derive(Debug)]
pub struct ClaimChecks {
    /// Endpoint, region and timeout for the producers' buckets.
    template: S3Config,
    max_bytes: u64,
    /// `bucket` or `bucket/prefix` entries.
    allow: Vec<String>,
    /// The lake's bucket: never a claim-check's source.
    lake_bucket: Option<String>,
    buckets: Mutex<HashMap<String, Arc<S3Store>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Permanent: the message goes to the dead-letter topic.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// Perhaps passing: retried.
    #[error("claim-check {uri}: {detail}")]
    Unavailable { uri: String, detail: String },
}

impl ClaimChecks {
    /// S3 as the lake reaches it when the lake is on S3, else AWS (or
    /// `kafka.claim_check_endpoint`).
    pub fn new(lake_s3: Option<&S3Config>, kafka: &KafkaConfig) -> Self {
        let template = match lake_s3 {
            Some(s3) => S3Config {
                bucket: String::new(),
                prefix: String::new(),
                endpoint: kafka.claim_check_endpoint.clone().or(s3.endpoint.clone()),
                ..s3.clone()
            },
            None => S3Config {
                bucket: String::new(),
                prefix: String::new(),
                endpoint: kafka.claim_check_endpoint.clone(),
                region: "us-east-1".into(),
                force_path_style: true,
                timeout: kafka.timeout,
                sse: None,
                sse_kms_key_id: None,
            },
        };
        Self {
            template,
            max_bytes: kafka.max_image_bytes,
            allow: kafka.claim_check_allow.clone(),
            lake_bucket: lake_s3.map(|s3| s3.bucket.clone()),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// May a claim-check point at `bucket`/`key`?
    pub fn allowed(&self, bucket: &str, key: &str) -> bool {
        if self.lake_bucket.as_deref() == Some(bucket) {
            return false;
        }
        let object = format!("{bucket}/{key}");
        self.allow.iter().any(|entry| match entry.split_once('/') {
            None => entry == bucket,
            // A prefix is a folder: `b/imgpipe` does not admit `b/imgpipe-private/…`.
            Some(_) => {
                let folder = entry.trim_end_matches('/');
                object.starts_with(&format!("{folder}/"))
            }
        })
    }

    async fn bucket(&self, name: &str) -> Result<Arc<S3Store>, lake::StoreError> {
        let mut buckets = self.buckets.lock().await;
        if let Some(b) = buckets.get(name) {
            return Ok(b.clone());
        }
        let store = Arc::new(
            S3Store::connect(&S3Config {
                bucket: name.to_owned(),
                ..self.template.clone()
            })
            .await?,
        );
        buckets.insert(name.to_owned(), store.clone());
        Ok(store)
    }

    /// The object's bytes, refused before download when too big (and as
    /// the body streams past the limit). Permanent refusals say the same
    /// for a missing object and a forbidden one, so a producer cannot probe
    /// what exists; anything else may pass and is retried by the caller.
    pub async fn fetch(&self, bucket: &str, key: &str) -> Result<Bytes, ClaimError> {
        let uri = format!("s3://{bucket}/{key}");
        if !self.allowed(bucket, key) {
            return Err(Rejected::new(
                DeadLetterReason::ClaimCheckRefused,
                format!("{uri} is not in kafka.claim_check_allow"),
            )
            .into());
        }
        let unavailable = |e: lake::StoreError| ClaimError::Unavailable {
            uri: uri.clone(),
            detail: e.to_string(),
        };
        let store = self.bucket(bucket).await.map_err(unavailable)?;
        match store.get_capped(key, self.max_bytes).await {
            Ok(Capped::Bytes(bytes)) => Ok(bytes),
            Ok(Capped::TooBig(size)) => Err(too_big(size, self.max_bytes).into()),
            // Missing, forbidden, a key S3 or we refuse: said alike, and
            // never retried.
            Ok(Capped::Missing | Capped::Refused(_)) | Err(lake::StoreError::InvalidKey(_)) => {
                Err(unreachable(&uri))
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

fn unreachable(uri: &str) -> ClaimError {
    Rejected::new(
        DeadLetterReason::ClaimCheckUnreachable,
        format!("{uri} could not be read"),
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_buckets_and_prefixes_never_the_lake() {
        let kafka = KafkaConfig {
            claim_check_allow: vec!["uploads".into(), "shared/imgpipe/".into(), "lake".into()],
            ..KafkaConfig::default()
        };
        let lake = S3Config {
            bucket: "lake".into(),
            prefix: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            force_path_style: true,
            timeout: std::time::Duration::from_secs(1),
            sse: None,
            sse_kms_key_id: None,
        };
        let claims = ClaimChecks::new(Some(&lake), &kafka);
        assert!(claims.allowed("uploads", "a/b.jpg"));
        assert!(claims.allowed("shared", "imgpipe/x.jpg"));
        assert!(!claims.allowed("shared", "other/x.jpg"));
        let kafka = KafkaConfig {
            claim_check_allow: vec!["shared/imgpipe".into()],
            ..KafkaConfig::default()
        };
        let folder = ClaimChecks::new(None, &kafka);
        assert!(folder.allowed("shared", "imgpipe/x.jpg"));
        assert!(!folder.allowed("shared", "imgpipe-private/x.jpg"));
        assert!(!claims.allowed("uploads2", "a.jpg"));
        assert!(
            !claims.allowed("lake", "raw/x"),
            "the lake is never a source"
        );
        let none = ClaimChecks::new(None, &KafkaConfig::default());
        assert!(!none.allowed("uploads", "a.jpg"), "empty list: refused");
    }
}
