//! The filesystem backend: one file per object under a root directory.
//! Writes go to `<root>/.tmp/` first, are fsynced, then renamed into place,
//! so a reader sees the old object or the new one, never a torn one.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{
    ObjectInfo, ObjectVersion, PutOptions, Store, StoreError, validate_key, validate_prefix,
};

const TMP_DIR: &str = ".tmp";
/// Temp files older than this belong to a writer that died mid-write.
const STALE_TMP: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let tmp = root.join(TMP_DIR);
        std::fs::create_dir_all(&tmp)
            .map_err(|e| StoreError::backend("open", &root.display().to_string(), e))?;
        let root = root
            .canonicalize()
            .map_err(|e| StoreError::backend("open", &root.display().to_string(), e))?;
        let store = Self { root };
        store.remove_stale_temps();
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Leftovers of writers killed mid-write, older than any live write.
    fn stale_temps(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.root.join(TMP_DIR)) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|entry| {
                entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > STALE_TMP)
            })
            .map(|entry| entry.path())
            .collect()
    }

    /// They hold image bytes too: remove them.
    fn remove_stale_temps(&self) -> usize {
        self.stale_temps()
            .into_iter()
            .filter(|p| std::fs::remove_file(p).is_ok())
            .count()
    }

    fn put_blocking(&self, key: &str, data: &[u8]) -> std::io::Result<()> {
        let dest = self.path(key);
        let dir = dest.parent().unwrap_or(&self.root);
        create_dirs_durably(&self.root, dir)?;
        let (tmp_path, mut file) = tempfile_in(&self.root.join(TMP_DIR))?;
        // A failed write must not leave image bytes behind in .tmp.
        let written = file
            .write_all(data)
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&tmp_path, &dest));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(e);
        }
        // The rename is durable only once the directory entry is.
        std::fs::File::open(dir)?.sync_all()
    }

    fn list_blocking(&self, prefix: &str) -> std::io::Result<Vec<ObjectInfo>> {
        // Walk only the deepest directory the prefix names.
        let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let start = self.root.join(dir_part);
        let mut out = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let path = entry.path();
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let Some(key) = rel
                    .to_str()
                    .map(|s| s.replace(std::path::MAIN_SEPARATOR, "/"))
                else {
                    continue;
                };
                if key == TMP_DIR {
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(m) => m,
                    // Deleted between readdir and stat: a concurrent sweep.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if meta.is_dir() {
                    // Only descend where keys with this prefix can be.
                    let as_dir = format!("{key}/");
                    if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                        stack.push(path);
                    }
                } else if key.starts_with(prefix) {
                    out.push(ObjectInfo {
                        key,
                        size: meta.len(),
                        last_modified: meta.modified().ok().map(DateTime::<Utc>::from),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete_blocking(&self, keys: &[String]) -> std::io::Result<()> {
        for key in keys {
            let path = self.path(key);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            // Prune directories left empty, so purged partitions vanish too.
            let mut dir = path.parent();
            while let Some(d) = dir {
                if d == self.root || std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
        Ok(())
    }
}

/// Make `dir` and every directory above it durable: each fsynced into its
/// parent once by this process. A partition directory whose own entry never
/// reached the disk would lose the image renamed into it on power loss —
/// also when another writer made it and has not synced it yet, so "it
/// exists" is not enough: only "this process synced it" is.
fn create_dirs_durably(root: &Path, dir: &Path) -> std::io::Result<()> {
    use std::{collections::HashSet, sync::Mutex};
    static DURABLE: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let known = |d: &Path| {
        DURABLE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|s| s.contains(d))
    };
    // Known and still there (empty directories are removed with their
    // last object, so a known one may be gone).
    let durable = |d: &Path| known(d) && d.is_dir();
    if durable(dir) {
        return Ok(());
    }
    let mut todo = Vec::new();
    let mut at = Some(dir);
    // The store's root was made (and synced) when it was opened.
    while let Some(d) = at.filter(|d| *d != root && d.starts_with(root) && !durable(d)) {
        todo.push(d);
        at = d.parent();
    }
    for d in todo.into_iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = d.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        DURABLE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(d.to_owned());
    }
    Ok(())
}

/// A fresh temp file with an unguessable name in `dir`.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{:032x}", rand::random::<u128>()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

async fn blocking<T: Send + 'static>(
    op: &'static str,
    key: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::backend(op, key, e))?
        .map_err(|e| StoreError::backend(op, key, e))
}

#[async_trait]
impl Store for FsStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn put(&self, key: &str, data: Bytes, _opts: &PutOptions) -> Result<(), StoreError> {
        validate_key(key)?;
        let (this, k) = (self.clone(), key.to_owned());
        blocking("put", key, move || this.put_blocking(&k, &data)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        validate_key(key)?;
        match tokio::fs::read(self.path(key)).await {
            Ok(data) => Ok(Some(Bytes::from(data))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            // A directory where an object was asked for: no such object.
            Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => Ok(None),
            Err(e) => Err(StoreError::backend("get", key, e)),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        validate_key(key)?;
        match tokio::fs::metadata(self.path(key)).await {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::backend("exists", key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        validate_prefix(prefix)?;
        let (this, p) = (self.clone(), prefix.to_owned());
        blocking("list", prefix, move || this.list_blocking(&p)).await
    }

    /// One stat, not a scan of the key's directory.
    async fn versions_of(&self, key: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        validate_key(key)?;
        let path = self.path(key);
        let key = key.to_owned();
        blocking(
            "versions_of",
            &key.clone(),
            move || match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => Ok(vec![ObjectVersion {
                    key,
                    version_id: None,
                    size: meta.len(),
                    delete_marker: false,
                    is_latest: true,
                }]),
                Ok(_) => Ok(Vec::new()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(e),
            },
        )
        .await
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        let dir = self.root.join(prefix.trim_end_matches('/'));
        let prefix = prefix.to_owned();
        blocking("list_dirs", &prefix.clone(), move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut out = Vec::new();
            for entry in entries {
                let entry = entry?;
                // Removed between readdir and stat: a concurrent sweep.
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                let name = entry.file_name();
                match name.to_str() {
                    Some(name) if kind.is_dir() && name != TMP_DIR => {
                        out.push(format!("{prefix}{name}/"));
                    }
                    _ => {}
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            validate_key(key)?;
        }
        let (this, keys) = (self.clone(), keys.to_vec());
        blocking("delete", "", move || this.delete_blocking(&keys)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let root = self.root.clone();
        blocking("ping", "", move || std::fs::read_dir(root).map(|_| ())).await
    }

    async fn stale_scratch(&self) -> Result<Vec<String>, StoreError> {
        let this = self.clone();
        let paths = blocking("stale_scratch", TMP_DIR, move || Ok(this.stale_temps())).await?;
        Ok(paths.iter().map(|p| p.display().to_string()).collect())
    }

    async fn remove_stale_scratch(&self) -> Result<usize, StoreError> {
        let this = self.clone();
        blocking("remove_stale_scratch", TMP_DIR, move || {
            Ok(this.remove_stale_temps())
        })
        .await
    }
}
