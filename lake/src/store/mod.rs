//! The lake behind one small interface, with two backends: the local
//! filesystem (the embedded default) and S3. Both pass [`conformance`].
//!
//! Keys are relative to the store's root (a directory, or bucket + prefix)
//! and use the layout in [`crate::layout`]. Every write is atomic: no reader
//! ever sees half an object.

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::config::LakeConfig;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
#[cfg(any(test, feature = "testing"))]
pub mod counting;
mod fs;
mod s3;

pub use fs::FsStore;
pub use s3::{Capped, S3Store};

pub type SharedStore = Arc<dyn Store>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
}

/// One stored version of an object (or a delete marker). Unversioned
/// stores have exactly one version per key, with no version id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub key: String,
    pub version_id: Option<String>,
    pub size: u64,
    pub delete_marker: bool,
    /// The current version (what a plain GET reads).
    pub is_latest: bool,
}

/// What travels with an object besides its bytes. The S3 backend stores it
/// as the object's Content-Type and user metadata; the filesystem ignores it.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub content_type: Option<String>,
    pub metadata: Vec<(String, String)>,
}

impl PutOptions {
    /// The user metadata every object of an image carries, so tools that see
    /// only the bucket can tell whose it is and when it must be gone.
    pub fn for_image(
        id: crate::ImageId,
        source: crate::Source,
        sha256: &str,
        expires_at: DateTime<Utc>,
        content_type: &str,
    ) -> Self {
        Self {
            content_type: Some(content_type.to_owned()),
            metadata: vec![
                ("imgpipe-id".into(), id.to_string()),
                ("imgpipe-source".into(), source.as_str().into()),
                ("imgpipe-sha256".into(), sha256.into()),
                ("imgpipe-expires-at".into(), expires_at.to_rfc3339()),
            ],
        }
    }
}

/// A URL a client may PUT an object's bytes to itself, without passing
/// them through us: valid for one key, one exact length, a short time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPut {
    pub url: String,
    /// Headers the PUT must carry as given (they are signed).
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    #[error("{op} {key}: {detail}")]
    Backend {
        op: &'static str,
        key: String,
        detail: String,
    },
}

impl StoreError {
    pub(crate) fn backend(op: &'static str, key: &str, detail: impl fmt::Display) -> Self {
        Self::Backend {
            op,
            key: key.to_owned(),
            detail: detail.to_string(),
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Where the data lands, for people: `/path/to/dir` or `s3://bucket/prefix`.
    fn location(&self) -> String;
    /// Write the whole object atomically, replacing any previous one.
    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<(), StoreError>;
    /// The object's bytes, or `None` if there is no such object.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;
    async fn exists(&self, key: &str) -> Result<bool, StoreError>;
    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;
    /// Delete these objects; keys that do not exist are not an error. On a
    /// versioned bucket this only hides them: see [`Store::purge`].
    async fn delete(&self, keys: &[String]) -> Result<(), StoreError>;
    /// Every version and delete marker under `prefix`, sorted by key.
    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        Ok(self
            .list(prefix)
            .await?
            .into_iter()
            .map(|o| ObjectVersion {
                key: o.key,
                version_id: None,
                size: o.size,
                delete_marker: false,
                is_latest: true,
            })
            .collect())
    }
    /// Every version and delete marker of exactly `key`.
    async fn versions_of(&self, key: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        let mut versions = self.list_versions(key).await?;
        versions.retain(|v| v.key == key);
        Ok(versions)
    }
    /// The "directories" right below `prefix` (which ends with `/`): each
    /// distinct `prefix + segment + "/"` of a key or version under it,
    /// sorted. One cheap request on S3, whatever lies below them.
    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut dirs: Vec<String> = self
            .list_versions(prefix)
            .await?
            .into_iter()
            .filter_map(|v| {
                let rest = v.key.strip_prefix(prefix)?;
                let (segment, _) = rest.split_once('/')?;
                Some(format!("{prefix}{segment}/"))
            })
            .collect();
        dirs.dedup();
        Ok(dirs)
    }
    /// The versions under `prefix` whose key sorts below `below`, sorted by
    /// key. The listing stops at `below`, so its cost follows what it
    /// returns, not what else lies under the prefix.
    async fn list_versions_below(
        &self,
        prefix: &str,
        below: &str,
    ) -> Result<Vec<ObjectVersion>, StoreError> {
        let mut versions = self.list_versions(prefix).await?;
        versions.retain(|v| v.key.as_str() < below);
        Ok(versions)
    }
    /// Remove these versions for good (a `None` version id: the object).
    async fn purge(&self, versions: &[ObjectVersion]) -> Result<(), StoreError> {
        let keys: Vec<String> = versions.iter().map(|v| v.key.clone()).collect();
        self.delete(&keys).await
    }
    /// Does the store answer?
    async fn ping(&self) -> Result<(), StoreError>;
    /// A URL to PUT exactly `length` bytes to `key` until `expires_in` has
    /// passed; `None` where the backend has no such URLs (the filesystem).
    async fn presign_put(
        &self,
        key: &str,
        length: u64,
        expires_in: std::time::Duration,
    ) -> Result<Option<PresignedPut>, StoreError> {
        let _ = (key, length, expires_in);
        Ok(None)
    }
    /// Partial writes a crashed writer left outside the key space (the
    /// filesystem's `.tmp/`), older than any live write can be. They hold
    /// image bytes, so the sweeper removes them and the audit reports them.
    async fn stale_scratch(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
    async fn remove_stale_scratch(&self) -> Result<usize, StoreError> {
        Ok(0)
    }
}

/// Keys are relative, `/`-separated, with no empty, `.` or `..` segments.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && !key.contains(['\0', '\\'])
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && !key.starts_with(".tmp/");
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidKey(key.to_owned()))
    }
}

/// Prefixes may end with `/` (or be empty); otherwise they follow key rules.
pub fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        return Ok(());
    }
    validate_key(trimmed).map_err(|_| StoreError::InvalidKey(prefix.to_owned()))
}

/// Open the lake the config names: S3 when `[lake.s3]` is set, else the
/// filesystem directory `data_dir` (created if missing).
pub async fn open(cfg: &LakeConfig) -> Result<SharedStore, StoreError> {
    match &cfg.s3 {
        Some(s3) => Ok(Arc::new(S3Store::connect(s3).await?)),
        None => Ok(Arc::new(FsStore::open(&cfg.data_dir)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules() {
        for good in ["raw/dt=2026-01-01/hr=00/x", "a", "a/b.c"] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "../a", "a/./b", ".tmp/x", "a\\b", "a\0",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("raw/").is_ok());
        assert!(validate_prefix("raw/dt=2026").is_ok());
        assert!(validate_prefix("../").is_err());
    }
}
