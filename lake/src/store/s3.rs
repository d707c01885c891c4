//! The S3 backend (aws-sdk-s3): path-style, custom endpoint, region, the
//! standard AWS credential chain, and a timeout on every call. A PUT is
//! atomic in S3 itself.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, timeout::TimeoutConfig};
use aws_sdk_s3::{
    Client,
    error::DisplayErrorContext,
    operation::list_object_versions::ListObjectVersionsOutput,
    primitives::ByteStream,
    types::{Delete, ObjectIdentifier},
};
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};

use super::{
    ObjectInfo, ObjectVersion, PresignedPut, PutOptions, Store, StoreError, validate_key,
    validate_prefix,
};
use crate::config::S3Config;

/// Where a ListObjectVersions page starts: key marker, version id marker.
type Markers = (Option<String>, Option<String>);

/// S3's limit for one DeleteObjects request.
const DELETE_BATCH: usize = 1000;

/// A 4xx answer (the request itself is refused) is [`Capped::Refused`]; a
/// server or network failure, or 408/429 ("not now", not "no"), may pass.
fn refused_or_err<E: std::error::Error + 'static>(
    op: &'static str,
    key: &str,
    e: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Result<Capped, StoreError> {
    match e.raw_response().map(|r| r.status().as_u16()) {
        Some(status) if (400..500).contains(&status) && !matches!(status, 408 | 429) => {
            Ok(Capped::Refused(status))
        }
        _ => Err(err(op, key, e)),
    }
}

/// What [`S3Store::get_capped`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capped {
    Missing,
    /// S3 answered with this 4xx status: asking again will not help.
    Refused(u16),
    /// Over the cap: at least this many bytes.
    TooBig(u64),
    Bytes(Bytes),
}

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    /// Asked for on every write, so a bucket policy that refuses
    /// unencrypted puts never refuses ours.
    sse: Option<(aws_sdk_s3::types::ServerSideEncryption, Option<String>)>,
}

fn err(op: &'static str, key: &str, e: impl std::error::Error) -> StoreError {
    StoreError::backend(op, key, DisplayErrorContext(e))
}

impl S3Store {
    pub async fn connect(cfg: &S3Config) -> Result<Self, StoreError> {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .operation_attempt_timeout(cfg.timeout)
            .operation_timeout(cfg.timeout * 3)
            .build();
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .timeout_config(timeouts)
            .load()
            .await;
        let mut s3 =
            aws_sdk_s3::config::Builder::from(&shared).force_path_style(cfg.force_path_style);
        if let Some(endpoint) = &cfg.endpoint {
            s3 = s3.endpoint_url(endpoint);
        }
        Ok(Self {
            client: Client::from_conf(s3.build()),
            bucket: cfg.bucket.clone(),
            prefix: cfg.prefix.clone(),
            sse: cfg.sse.map(|sse| {
                use crate::config::ServerSideEncryption as Sse;
                let kind = match sse {
                    Sse::AwsKms => aws_sdk_s3::types::ServerSideEncryption::AwsKms,
                    Sse::Aes256 => aws_sdk_s3::types::ServerSideEncryption::Aes256,
                };
                (kind, cfg.sse_kms_key_id.clone())
            }),
        })
    }

    /// Replace the bucket's lifecycle rules.
    pub async fn put_lifecycle(
        &self,
        config: aws_sdk_s3::types::BucketLifecycleConfiguration,
    ) -> Result<(), StoreError> {
        self.client
            .put_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .lifecycle_configuration(config)
            .send()
            .await
            .map_err(|e| err("put_lifecycle", &self.bucket, e))?;
        Ok(())
    }

    /// The bucket's lifecycle rules (none when it has no configuration).
    pub async fn lifecycle(&self) -> Result<Vec<aws_sdk_s3::types::LifecycleRule>, StoreError> {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        match self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => Ok(out.rules().to_vec()),
            Err(e)
                if e.as_service_error().and_then(|s| s.code())
                    == Some("NoSuchLifecycleConfiguration") =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(err("lifecycle", &self.bucket, e)),
        }
    }

    /// The raw SDK client, for tests that look at what a store call left
    /// behind (headers, versions) beyond the `Store` interface.
    #[cfg(any(test, feature = "testing"))]
    pub fn sdk_client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Create the bucket unless it exists (local servers and first runs).
    pub async fn create_bucket_if_missing(&self) -> Result<(), StoreError> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
                }) =>
            {
                Ok(())
            }
            Err(e) => Err(err("create_bucket", &self.bucket, e)),
        }
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// One page of ListObjectVersions starting at `from`, and where the next
    /// page starts (none after the last).
    async fn version_page(
        &self,
        op: &'static str,
        prefix: &str,
        delimiter: Option<&str>,
        from: Markers,
    ) -> Result<(ListObjectVersionsOutput, Option<Markers>), StoreError> {
        let page = self
            .client
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(self.full(prefix))
            .set_delimiter(delimiter.map(str::to_owned))
            .set_key_marker(from.0)
            .set_version_id_marker(from.1)
            .send()
            .await
            .map_err(|e| err(op, prefix, e))?;
        let next = (page.is_truncated() == Some(true))
            .then(|| {
                (
                    page.next_key_marker().map(str::to_owned),
                    page.next_version_id_marker().map(str::to_owned),
                )
            })
            .filter(|(key, version)| key.is_some() || version.is_some());
        Ok((page, next))
    }

    /// Every version and delete marker under `prefix`, sorted by key; with
    /// `below`, only keys sorting below it, and no page past it is asked for.
    async fn versions(
        &self,
        prefix: &str,
        below: Option<&str>,
    ) -> Result<Vec<ObjectVersion>, StoreError> {
        validate_prefix(prefix)?;
        let below_full = below.map(|b| self.full(b));
        let mut out = Vec::new();
        let mut from = Markers::default();
        loop {
            let (page, next) = self
                .version_page("list_versions", prefix, None, from)
                .await?;
            let strip = |k: Option<&str>| {
                k.and_then(|k| k.strip_prefix(&self.prefix))
                    .map(str::to_owned)
            };
            // "null" is S3's id for a version written while the bucket was
            // unversioned: kept, so a purge names it (a plain delete on a
            // versioned bucket would only hide it behind a marker).
            let version = |v: Option<&str>| v.map(str::to_owned);
            for v in page.versions() {
                let Some(key) = strip(v.key()) else { continue };
                out.push(ObjectVersion {
                    key,
                    version_id: version(v.version_id()),
                    size: v.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    delete_marker: false,
                    is_latest: v.is_latest() == Some(true),
                });
            }
            for m in page.delete_markers() {
                let Some(key) = strip(m.key()) else { continue };
                out.push(ObjectVersion {
                    key,
                    version_id: version(m.version_id()),
                    size: 0,
                    delete_marker: true,
                    is_latest: m.is_latest() == Some(true),
                });
            }
            let Some(next) = next else { break };
            // Keys come in order: the next page starts past `below`.
            if let (Some(key), Some(below)) = (&next.0, &below_full)
                && key >= below
            {
                break;
            }
            from = next;
        }
        if let Some(below) = below {
            out.retain(|v| v.key.as_str() < below);
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// DeleteObjects in S3's batches of at most 1000 keys.
    async fn delete_batched(&self, items: &[(&str, Option<&str>)]) -> Result<(), StoreError> {
        for batch in items.chunks(DELETE_BATCH) {
            let first = batch[0].0;
            let objects = batch
                .iter()
                .map(|(k, v)| {
                    ObjectIdentifier::builder()
                        .key(self.full(k))
                        .set_version_id(v.map(str::to_owned))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err("delete", first, e))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| err("delete", first, e))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| err("delete", first, e))?;
            if let Some(failed) = out.errors().first() {
                return Err(StoreError::backend(
                    "delete",
                    failed.key().unwrap_or_default(),
                    format!(
                        "{} of {} keys failed: {}",
                        out.errors().len(),
                        batch.len(),
                        failed.message().unwrap_or("no message")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The object's bytes if it has at most `max` of them: its size is
    /// asked first (HEAD), then the body is read as it streams, stopping
    /// past `max` whatever the HEAD said.
    pub async fn get_capped(&self, key: &str, max: u64) -> Result<Capped, StoreError> {
        validate_key(key)?;
        let head = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
        {
            Ok(h) => h,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {
                return Ok(Capped::Missing);
            }
            Err(e) => return refused_or_err("head", key, e),
        };
        let size = head
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        if size > max {
            return Ok(Capped::TooBig(size));
        }
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Ok(Capped::Missing);
            }
            Err(e) => return refused_or_err("get", key, e),
        };
        let mut body = out.body;
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        while let Some(chunk) = body.try_next().await.map_err(|e| err("get", key, e))? {
            if (bytes.len() + chunk.len()) as u64 > max {
                return Ok(Capped::TooBig((bytes.len() + chunk.len()) as u64));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Capped::Bytes(Bytes::from(bytes)))
    }

    /// Turn on bucket versioning (tests of version-aware deletion).
    pub async fn enable_versioning(&self) -> Result<(), StoreError> {
        use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
        self.client
            .put_bucket_versioning()
            .bucket(&self.bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| err("put_bucket_versioning", &self.bucket, e))?;
        Ok(())
    }
}

fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t.secs(), t.subsec_nanos()).single()
}

#[async_trait]
impl Store for S3Store {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<(), StoreError> {
        validate_key(key)?;
        let metadata: HashMap<String, String> = opts.metadata.iter().cloned().collect();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .body(ByteStream::from(data))
            .set_content_type(opts.content_type.clone())
            .set_metadata((!metadata.is_empty()).then_some(metadata))
            .set_server_side_encryption(self.sse.as_ref().map(|(kind, _)| kind.clone()))
            .set_ssekms_key_id(self.sse.as_ref().and_then(|(_, key)| key.clone()))
            .send()
            .await
            .map_err(|e| err("put", key, e))?;
        Ok(())
    }

    async fn presign_put(
        &self,
        key: &str,
        length: u64,
        expires_in: std::time::Duration,
    ) -> Result<Option<PresignedPut>, StoreError> {
        validate_key(key)?;
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires_in)
            .map_err(|e| err("presign_put", key, e))?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            // Signed: S3 refuses a body of any other length.
            .content_length(i64::try_from(length).unwrap_or(i64::MAX))
            .set_server_side_encryption(self.sse.as_ref().map(|(kind, _)| kind.clone()))
            .set_ssekms_key_id(self.sse.as_ref().and_then(|(_, key)| key.clone()))
            .presigned(config)
            .await
            .map_err(|e| err("presign_put", key, e))?;
        Ok(Some(PresignedPut {
            url: request.uri().to_owned(),
            headers: request
                .headers()
                // The browser sets these itself and refuses to be told.
                .filter(|(name, _)| {
                    !name.eq_ignore_ascii_case("host")
                        && !name.eq_ignore_ascii_case("content-length")
                })
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
        }))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        validate_key(key)?;
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(err("get", key, e)),
        };
        let body = out.body.collect().await.map_err(|e| err("get", key, e))?;
        Ok(Some(body.into_bytes()))
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        validate_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(err("exists", key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        validate_prefix(prefix)?;
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full(prefix))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| err("list", prefix, e))?;
            for obj in page.contents() {
                let Some(key) = obj.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
                    continue;
                };
                out.push(ObjectInfo {
                    key: key.to_owned(),
                    size: obj.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    last_modified: obj.last_modified().and_then(to_chrono),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            validate_key(key)?;
        }
        let items: Vec<(&str, Option<&str>)> = keys.iter().map(|k| (k.as_str(), None)).collect();
        self.delete_batched(&items).await
    }

    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        self.versions(prefix, None).await
    }

    async fn list_versions_below(
        &self,
        prefix: &str,
        below: &str,
    ) -> Result<Vec<ObjectVersion>, StoreError> {
        validate_prefix(below)?;
        self.versions(prefix, Some(below)).await
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        // Versions, not objects: a partition holding only old versions or
        // delete markers is still data to purge.
        let mut out = Vec::new();
        let mut from = Markers::default();
        loop {
            let (page, next) = self
                .version_page("list_dirs", prefix, Some("/"), from)
                .await?;
            out.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix()?.strip_prefix(&self.prefix))
                    .map(str::to_owned),
            );
            let Some(next) = next else { break };
            from = next;
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn purge(&self, versions: &[ObjectVersion]) -> Result<(), StoreError> {
        for v in versions {
            validate_key(&v.key)?;
        }
        let items: Vec<(&str, Option<&str>)> = versions
            .iter()
            .map(|v| (v.key.as_str(), v.version_id.as_deref()))
            .collect();
        self.delete_batched(&items).await
    }

    /// GetBucketVersioning, not HeadBucket: HeadBucket is authorised by
    /// s3:ListBucket on the whole bucket, a grant no task role otherwise
    /// needs, while s3:GetBucketVersioning reveals only the setting imgpipe
    /// relies on (versions are what purges remove). One GET either way.
    /// A 2xx whose body the SDK cannot read still answers the question
    /// (reachable, authorised): moto wraps this body in a different root.
    async fn ping(&self) -> Result<(), StoreError> {
        match self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.raw_response().is_some_and(|r| r.status().is_success()) => Ok(()),
            Err(e) => Err(err("ping", &self.bucket, e)),
        }
    }
}
