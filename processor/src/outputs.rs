//! How the processor reads and writes an image's objects, the same for its
//! first run and for `imgpipe reprocess`: every call retried with one
//! policy, the script's files under the image's `script/` folder, the
//! manifest naming every key, and a look at the tombstone after the writes
//! (an erasure may have looked before they existed).

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use lake::{
    ImageId, SharedStore, StoreError, erasure, layout, records::Manifest, store::PutOptions,
};

fn retry_policy(retries: u32) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(100))
        .with_max_delay(std::time::Duration::from_secs(10))
        .with_max_times(retries as usize)
        .with_jitter()
}

/// The lake, with every call retried `retries` times on failure.
#[derive(Debug, Clone)]
pub(crate) struct Outputs {
    store: SharedStore,
    policy: ExponentialBuilder,
}

impl Outputs {
    pub(crate) fn new(store: SharedStore, retries: u32) -> Self {
        Self {
            store,
            policy: retry_policy(retries),
        }
    }

    pub(crate) fn policy(&self) -> ExponentialBuilder {
        self.policy
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        (|| self.store.get(key)).retry(self.policy).await
    }

    pub(crate) async fn put(
        &self,
        key: &str,
        body: Bytes,
        opts: &PutOptions,
    ) -> Result<(), StoreError> {
        (|| self.store.put(key, body.clone(), opts))
            .retry(self.policy)
            .await
    }

    /// The script's files under `id`'s `script/` folder; their keys.
    pub(crate) async fn script_files(
        &self,
        id: ImageId,
        files: Vec<(String, Bytes)>,
        opts: &PutOptions,
    ) -> Result<Vec<String>, StoreError> {
        let opts = PutOptions {
            content_type: None,
            ..opts.clone()
        };
        let mut keys = Vec::with_capacity(files.len());
        for (name, body) in files {
            let key = layout::script_key(id, &name);
            self.put(&key, body, &opts).await?;
            keys.push(key);
        }
        Ok(keys)
    }

    /// The manifest, written after everything it names.
    pub(crate) async fn manifest(
        &self,
        manifest: &Manifest,
        opts: &PutOptions,
    ) -> Result<(), StoreError> {
        let body = Bytes::from(serde_json::to_vec(manifest).unwrap_or_default());
        let opts = PutOptions {
            content_type: Some("application/json".into()),
            ..opts.clone()
        };
        self.put(&layout::manifest_key(manifest.id), body, &opts)
            .await
    }

    pub(crate) async fn is_erased(&self, id: ImageId) -> Result<bool, StoreError> {
        (|| erasure::is_erased(&self.store, id))
            .retry(self.policy)
            .await
    }

    /// An image erased while we worked on it: remove what we just wrote
    /// (the erasure may have looked before it existed). True if so.
    pub(crate) async fn erased_meanwhile(
        &self,
        id: ImageId,
        written: &[String],
    ) -> Result<bool, StoreError> {
        if !self.is_erased(id).await? {
            return Ok(false);
        }
        tracing::info!(%id, "image erased during processing; outputs removed");
        (|| erasure::purge_keys(&self.store, written))
            .retry(self.policy)
            .await?;
        Ok(true)
    }
}

/// Every key a manifest names, in the order they are written: the raw
/// object, the thumbnail, the script's files, the manifest itself.
pub(crate) fn manifest_keys(id: ImageId, raw_key: &str, script_keys: Vec<String>) -> Vec<String> {
    [raw_key.to_owned(), layout::thumb_key(id)]
        .into_iter()
        .chain(script_keys)
        .chain([layout::manifest_key(id)])
        .collect()
}
