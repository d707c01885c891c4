//! A store that counts the listing requests it is asked for, as S3 would
//! bill them (one request per page of up to 1000 keys): how the sweeper's
//! tests and benchmark measure what a pass costs. It can also fail every
//! write after the first few, as a crash between two writes would leave
//! the lake.

use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectInfo, ObjectVersion, PutOptions, SharedStore, Store, StoreError};
use crate::access::{Access, Op};

/// S3's page size for listings.
const PAGE: usize = 1000;

#[derive(Debug)]
pub struct Counting {
    inner: SharedStore,
    requests: AtomicU64,
    /// Reads of one object (GET, HEAD).
    reads: AtomicU64,
    listings: Mutex<Vec<(&'static str, String)>>,
    /// Every request as S3 would authorise it: checked against
    /// `lake::access` by the tests of each mode.
    accesses: Mutex<Vec<Access>>,
    /// Writes (put, delete, purge) still allowed; `None`: all of them.
    writes_left: Mutex<Option<u64>>,
}

impl Counting {
    pub fn new(inner: SharedStore) -> Self {
        Self {
            inner,
            requests: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            listings: Mutex::default(),
            accesses: Mutex::default(),
            writes_left: Mutex::new(None),
        }
    }

    /// Let `n` more writes through, then fail every one.
    pub fn fail_writes_after(self, n: u64) -> Self {
        if let Ok(mut left) = self.writes_left.lock() {
            *left = Some(n);
        }
        self
    }

    fn write(&self, op: &'static str, key: &str) -> Result<(), StoreError> {
        let Ok(mut left) = self.writes_left.lock() else {
            return Ok(());
        };
        match left.as_mut() {
            Some(0) => Err(StoreError::backend(op, key, "injected failure")),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Listing requests since the last [`Counting::reset`].
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Object reads (GET, HEAD) since the last [`Counting::reset`].
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    /// Every listing asked for since the last reset: (operation, prefix).
    pub fn listings(&self) -> Vec<(&'static str, String)> {
        self.listings.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Every request since the last reset, in order.
    pub fn accesses(&self) -> Vec<Access> {
        self.accesses.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn access(&self, op: Op, key: &str) {
        if let Ok(mut l) = self.accesses.lock() {
            l.push(Access {
                op,
                key: key.to_owned(),
            });
        }
    }

    pub fn reset(&self) {
        self.requests.store(0, Ordering::SeqCst);
        self.reads.store(0, Ordering::SeqCst);
        if let Ok(mut l) = self.listings.lock() {
            l.clear();
        }
        if let Ok(mut l) = self.accesses.lock() {
            l.clear();
        }
    }

    fn note(&self, op: &'static str, prefix: &str, returned: usize) {
        self.access(Op::List, prefix);
        let pages = returned.div_ceil(PAGE).max(1) as u64;
        self.requests.fetch_add(pages, Ordering::SeqCst);
        if let Ok(mut l) = self.listings.lock() {
            l.push((op, prefix.to_owned()));
        }
    }
}

#[async_trait]
impl Store for Counting {
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn put(&self, key: &str, data: Bytes, opts: &PutOptions) -> Result<(), StoreError> {
        self.access(Op::Write, key);
        self.write("put", key)?;
        self.inner.put(key, data, opts).await
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.access(Op::Read, key);
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.access(Op::Read, key);
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.exists(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let out = self.inner.list(prefix).await?;
        self.note("list", prefix, out.len());
        Ok(out)
    }
    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            self.access(Op::Delete, key);
        }
        self.write("delete", keys.first().map_or("", String::as_str))?;
        self.inner.delete(keys).await
    }
    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        let out = self.inner.list_versions(prefix).await?;
        self.note("list_versions", prefix, out.len());
        Ok(out)
    }
    async fn versions_of(&self, key: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        let out = self.inner.versions_of(key).await?;
        self.note("versions_of", key, out.len());
        Ok(out)
    }
    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let out = self.inner.list_dirs(prefix).await?;
        self.note("list_dirs", prefix, out.len());
        Ok(out)
    }
    async fn list_versions_below(
        &self,
        prefix: &str,
        below: &str,
    ) -> Result<Vec<ObjectVersion>, StoreError> {
        let out = self.inner.list_versions_below(prefix, below).await?;
        self.note("list_versions_below", prefix, out.len());
        Ok(out)
    }
    async fn purge(&self, versions: &[ObjectVersion]) -> Result<(), StoreError> {
        for v in versions {
            self.access(Op::DeleteVersion, &v.key);
        }
        self.write("purge", versions.first().map_or("", |v| v.key.as_str()))?;
        self.inner.purge(versions).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn stale_scratch(&self) -> Result<Vec<String>, StoreError> {
        self.inner.stale_scratch().await
    }
    async fn remove_stale_scratch(&self) -> Result<usize, StoreError> {
        self.inner.remove_stale_scratch().await
    }
    async fn presign_put(
        &self,
        key: &str,
        length: u64,
        expires_in: std::time::Duration,
    ) -> Result<Option<super::PresignedPut>, StoreError> {
        // The URL is signed with this mode's credentials: the browser's PUT
        // is authorised as this mode's write.
        self.access(Op::Write, key);
        self.inner.presign_put(key, length, expires_in).await
    }
}
