//! Parts shared by the cloud stores (S3, GCS): the object layout, which is
//! the local store's (`blobs/<digest>.tar.gz`), the retry schedule of whole
//! operations, and downloads of `s3://` and `gs://` URLs for
//! `--capture-once URL:TAG`.

use super::store::{validate_digest, StoreError};
use futures_util::StreamExt as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;
use studio_core::config::{StorageConfig, StorageKind};
use tokio::io::AsyncWriteExt as _;

/// Prefix of every blob's key.
pub const BLOB_PREFIX: &str = "blobs/";

/// Returns the object key of a blob.
pub fn blob_key(digest: &str) -> Result<String, StoreError> {
    validate_digest(digest)?;
    Ok(format!("{BLOB_PREFIX}{digest}.tar.gz"))
}

/// Returns the digest part of a blob's key, or `None` for other keys.
/// Turns `(object key, size)` pairs of a listing into blobs, sorted by
/// digest; objects that are not blobs are left out.
pub fn blobs_of_objects(objects: Vec<(String, u64)>) -> Vec<super::store::BlobInfo> {
    let mut blobs: Vec<super::store::BlobInfo> = objects
        .into_iter()
        .filter_map(|(key, size)| {
            let digest = digest_of_key(&key)?;
            super::store::validate_digest(digest).ok()?;
            Some(super::store::BlobInfo {
                digest: digest.to_string(),
                size,
            })
        })
        .collect();
    blobs.sort_by(|left, right| left.digest.cmp(&right.digest));
    blobs
}

pub fn digest_of_key(key: &str) -> Option<&str> {
    key.strip_prefix(BLOB_PREFIX)?.strip_suffix(".tar.gz")
}

/// Retries of a whole store operation (an upload started over, a read
/// resumed), on top of the retries each client library makes per request.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Wait before the second try; it doubles on each later one.
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Six tries over about a minute: long enough for a restarted server or
    /// a short network outage.
    fn default() -> Self {
        Self {
            attempts: 6,
            initial_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Builds the default schedule with the tries of `storage.attempts`.
    pub fn for_config(config: &StorageConfig) -> Self {
        let default = Self::default();
        Self {
            attempts: config.attempts.unwrap_or(default.attempts),
            ..default
        }
    }

    /// Returns the wait after `failures` failed tries (1 or more).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }
}

/// Runs `operation` (given the number of the try, from 1) until it
/// succeeds or `policy.attempts` tries failed; returns the last error.
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, object: &str, operation: F) -> Result<T, String>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    retry_reporting(policy, object, &|_| {}, operation).await
}

/// Runs `operation` as [`retry`] does, and calls `report` with a line on
/// the failed try while it waits for the next one, then with `None` when
/// the operation ends.
pub async fn retry_reporting<T, F, Fut>(
    policy: &RetryPolicy,
    object: &str,
    report: &(dyn Fn(Option<String>) + Send + Sync),
    mut operation: F,
) -> Result<T, String>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let mut attempt = 1;
    let result = loop {
        match operation(attempt).await {
            Ok(value) => break Ok(value),
            Err(error) if attempt >= policy.attempts => {
                tracing::error!(object, attempt, %error, "cloud store operation failed; no retries left");
                break Err(format!("{error} (after {attempt} tries)"));
            }
            Err(error) => {
                let delay = policy.delay(attempt);
                tracing::warn!(object, attempt, %error, ?delay, "cloud store operation failed; retrying");
                report(Some(format!(
                    "try {attempt} of {} failed, next in {}s: {error}",
                    policy.attempts,
                    delay.as_secs()
                )));
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    };
    report(None);
    result
}

/// Writes a byte stream to `destination` through a temporary file in the
/// same directory, renamed into place only when complete.
pub async fn write_stream(
    stream: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>>,
    destination: &Path,
) -> Result<(), StoreError> {
    let directory = destination.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(directory)
        .await
        .map_err(|error| StoreError::io(directory, error))?;
    let name = destination
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = directory.join(format!(".{name}.{}", uuid::Uuid::new_v4().simple()));
    let result = async {
        let mut file = tokio::fs::File::create(&temporary).await?;
        let mut stream = std::pin::pin!(stream);
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk?).await?;
        }
        file.flush().await?;
        file.sync_all().await?;
        tokio::fs::rename(&temporary, destination).await
    }
    .await;
    if let Err(error) = result {
        let _ = tokio::fs::remove_file(&temporary).await;
        return Err(StoreError::io(destination, error));
    }
    Ok(())
}

/// A parsed `s3://bucket/key` or `gs://bucket/key` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectUrl {
    pub kind: StorageKind,
    pub bucket: String,
    /// Key of one object, or a prefix when it ends with `/` or names no
    /// object.
    pub key: String,
}

impl ObjectUrl {
    /// Parses `url`, or returns `None` when it is not `s3://` or `gs://`.
    pub fn parse(url: &str) -> Option<Result<Self, String>> {
        let (kind, rest) = if let Some(rest) = url.strip_prefix("s3://") {
            (StorageKind::S3, rest)
        } else if let Some(rest) = url.strip_prefix("gs://") {
            (StorageKind::Gcs, rest)
        } else {
            return None;
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Some(Err(format!(
                "invalid URL {url:?}: name the bucket, as in s3://bucket/key or gs://bucket/key"
            )));
        }
        let invalid_key = key
            .split('/')
            .any(|segment| segment == ".." || segment == ".");
        if invalid_key {
            return Some(Err(format!(
                "invalid URL {url:?}: the key must not contain '.' or '..' segments"
            )));
        }
        Some(Ok(Self {
            kind,
            bucket: bucket.to_string(),
            key: key.to_string(),
        }))
    }
}

/// Downloads an object, or every object under a prefix, of `url` into
/// `<cache>/<sha256 of the URL>/` unless it is there already, and returns
/// the file (one object) or the directory (a prefix). The endpoint, region,
/// profile and project come from `storage` when it is of the same type, so
/// the same credentials and server are used.
pub async fn download_url(
    url: &ObjectUrl,
    storage: &StorageConfig,
    cache: &Path,
) -> Result<PathBuf, String> {
    use sha2::Digest as _;
    let text = format!(
        "{}://{}/{}",
        if url.kind == StorageKind::S3 {
            "s3"
        } else {
            "gs"
        },
        url.bucket,
        url.key
    );
    let directory = cache.join(super::store::hex(&sha2::Sha256::digest(text.as_bytes())));
    let done = directory.join(".complete");
    let mut config = if storage.backend() == Ok(url.kind) {
        storage.clone()
    } else {
        StorageConfig::default()
    };
    config.bucket = Some(url.bucket.clone());

    let store: Box<dyn ObjectReader> = match url.kind {
        StorageKind::S3 => Box::new(
            super::s3::S3Store::open_existing(&config)
                .await
                .map_err(|error| error.to_string())?,
        ),
        StorageKind::Gcs => Box::new(
            super::gcs::GcsStore::open_existing(&config)
                .await
                .map_err(|error| error.to_string())?,
        ),
        StorageKind::Local => return Err(format!("{text} is not a cloud URL")),
    };
    let single = !url.key.is_empty() && !url.key.ends_with('/');
    let listed = store
        .list_prefix(&url.key)
        .await
        .map_err(|error| error.to_string())?;
    if single && listed.iter().any(|(key, _)| key == &url.key) {
        let name = url.key.rsplit('/').next().unwrap_or("download");
        let target = directory.join(name);
        if tokio::fs::try_exists(&done).await.unwrap_or(false) {
            return Ok(target);
        }
        store
            .download(&url.key, &target)
            .await
            .map_err(|error| error.to_string())?;
        mark_complete(&done).await?;
        tracing::info!(url = text, path = %target.display(), "downloaded an object");
        return Ok(target);
    }
    let prefix = if single {
        format!("{}/", url.key)
    } else {
        url.key.clone()
    };
    let objects: Vec<(String, u64)> = listed
        .into_iter()
        .filter(|(key, _)| key.starts_with(&prefix) && !key.ends_with('/'))
        .collect();
    if objects.is_empty() {
        return Err(format!(
            "no object found at {text}; check the bucket and key"
        ));
    }
    let target = directory.join("files");
    if tokio::fs::try_exists(&done).await.unwrap_or(false) {
        return Ok(target);
    }
    for (key, _) in &objects {
        let relative = &key[prefix.len()..];
        if relative
            .split('/')
            .any(|segment| segment.is_empty() || segment == ".." || segment == ".")
        {
            tracing::warn!(
                url = text,
                key,
                "skipping an object whose key is not a safe relative path"
            );
            continue;
        }
        store
            .download(key, &target.join(relative))
            .await
            .map_err(|error| error.to_string())?;
    }
    mark_complete(&done).await?;
    tracing::info!(url = text, objects = objects.len(), path = %target.display(), "downloaded a prefix");
    Ok(target)
}

async fn mark_complete(done: &Path) -> Result<(), String> {
    tokio::fs::write(done, b"")
        .await
        .map_err(|error| format!("cannot write {}: {error}", done.display()))
}

/// Object-level reads that `download_url` needs from either cloud store.
#[async_trait::async_trait]
pub trait ObjectReader: Send + Sync {
    async fn list_prefix(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError>;
    async fn download(&self, key: &str, destination: &Path) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_urls_parse() {
        let url = ObjectUrl::parse("s3://data/sets/x.csv").unwrap().unwrap();
        assert_eq!(url.kind, StorageKind::S3);
        assert_eq!(url.bucket, "data");
        assert_eq!(url.key, "sets/x.csv");

        let url = ObjectUrl::parse("gs://data/sets/").unwrap().unwrap();
        assert_eq!(url.kind, StorageKind::Gcs);
        assert_eq!(url.key, "sets/");

        assert!(ObjectUrl::parse("https://host/x").is_none());
        assert!(ObjectUrl::parse("s3:///key").unwrap().is_err());
        assert!(ObjectUrl::parse("gs://b/../etc").unwrap().is_err());
    }

    #[test]
    fn blob_keys_round_trip() {
        let digest = "a".repeat(64);
        let key = blob_key(&digest).unwrap();
        assert_eq!(key, format!("blobs/{digest}.tar.gz"));
        assert_eq!(digest_of_key(&key), Some(digest.as_str()));
        assert!(blob_key("../x").is_err());
    }

    #[test]
    fn retry_delay_doubles_to_max() {
        let policy = RetryPolicy {
            attempts: 5,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
        };
        assert_eq!(policy.delay(1), Duration::from_secs(1));
        assert_eq!(policy.delay(2), Duration::from_secs(2));
        assert_eq!(policy.delay(3), Duration::from_secs(4));
        assert_eq!(policy.delay(4), Duration::from_secs(5));
    }
}
