//! Claim-check messages: the image waits in S3 (`s3://bucket/key`) because
//! it is larger than the broker's message limit; the bridge copies it into
//! `raw/`. The producer's object is left where it is — it is theirs.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use lake::{
    Store,
    config::{KafkaConfig, S3Config},
    store::S3Store,
};
use tokio::sync::Mutex;

use crate::message::{DeadLetterReason, Rejected, too_big};

#[derive(Debug)]
pub struct ClaimChecks {
    /// Endpoint, region and timeout for the producers' buckets.
    template: S3Config,
    max_bytes: u64,
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
            },
        };
        Self {
            template,
            max_bytes: kafka.max_image_bytes,
            buckets: Mutex::new(HashMap::new()),
        }
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

    /// The object's bytes, refused before download when too big. A missing
    /// object is permanent; anything else may pass and is retried by the
    /// caller, which dead-letters the message once retries run out.
    pub async fn fetch(&self, bucket: &str, key: &str) -> Result<Bytes, ClaimError> {
        let uri = format!("s3://{bucket}/{key}");
        let unavailable = |e: lake::StoreError| ClaimError::Unavailable {
            uri: uri.clone(),
            detail: e.to_string(),
        };
        let store = self.bucket(bucket).await.map_err(unavailable)?;
        let listed = store.list(key).await.map_err(unavailable)?;
        let Some(object) = listed.iter().find(|o| o.key == key) else {
            return Err(Rejected::new(
                DeadLetterReason::ClaimCheckUnreachable,
                format!("{uri} does not exist"),
            )
            .into());
        };
        if object.size > self.max_bytes {
            return Err(too_big(object.size, self.max_bytes).into());
        }
        match store.get(key).await.map_err(unavailable)? {
            Some(bytes) if bytes.len() as u64 <= self.max_bytes => Ok(bytes),
            Some(bytes) => Err(too_big(bytes.len() as u64, self.max_bytes).into()),
            None => Err(Rejected::new(
                DeadLetterReason::ClaimCheckUnreachable,
                format!("{uri} disappeared while being copied"),
            )
            .into()),
        }
    }
}
