//! Artifacts: the named files and directories of an experiment, packed as
//! deterministic tar.gz blobs and stored by the SHA-256 of their bytes.
//!
//! Ordering of the final capture: when a script ends, the runner first
//! stores the last version of every mutable artifact (and waits for the
//! captures still running, such as the start-up snapshot), appending their
//! `ArtifactStored` events, and only then appends `ExperimentFinished`. So
//! every reader of the log (`runs list`, the dashboard, a following
//! `studio run`) sees the status `running` until the final artifacts are
//! stored, and a final status always comes with final artifacts.

pub mod capture;
pub mod download;
pub mod gcs;
pub mod http;
pub mod index;
pub mod local;
pub mod metrics;
pub mod pack;
pub mod remote;
pub mod s3;
pub mod store;
pub mod unpack;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use store::ArtifactStore;
use studio_core::config::{StorageConfig, StorageKind};

/// Artifact state shared by the daemon: the store and the captures that
/// run now.
pub struct Artifacts {
    pub store: Arc<dyn ArtifactStore>,
    /// Where packed files are written before `put`.
    pub staging: PathBuf,
    /// Unpacked reused artifacts and downloads, shared by experiments.
    pub blob_cache: PathBuf,
    /// Fingerprint of a source (names, sizes, times) to its packed result.
    pub(crate) fingerprints: PathBuf,
    /// Held for a blob while it is stored and recorded, and while it is
    /// checked and freed, so a blob is never freed between the two steps
    /// of another experiment storing it.
    pub(crate) blob_locks: BlobLocks,
    pub(crate) sessions: Mutex<HashMap<String, Arc<capture::Session>>>,
}

impl Artifacts {
    /// Opens the store that the `storage:` config selects. Packed files
    /// are staged under `<home>/artifacts/tmp` whatever the backend.
    pub async fn open(
        paths: &studio_core::paths::StudioPaths,
        storage: &StorageConfig,
    ) -> anyhow::Result<Self> {
        let root = paths.home.join("artifacts");
        let local = local::LocalStore::open(&root)?;
        let staging = local.temp_dir();
        let store: Arc<dyn ArtifactStore> = match storage.backend() {
            Ok(StorageKind::Local) => Arc::new(local),
            Ok(StorageKind::S3) => Arc::new(s3::S3Store::open(storage).await?),
            Ok(StorageKind::Gcs) => Arc::new(gcs::GcsStore::open(storage).await?),
            Err(error) => {
                // The config loader has already warned about the type.
                tracing::warn!(%error, "using the local artifact store");
                Arc::new(local)
            }
        };
        let fingerprints = root.join("fingerprints");
        std::fs::create_dir_all(&fingerprints)?;
        Ok(Self {
            store,
            staging,
            blob_cache: paths.blob_cache(),
            fingerprints,
            blob_locks: BlobLocks::default(),
            sessions: Mutex::new(HashMap::new()),
        })
    }
}

/// Locks by blob digest, striped: blobs with different digests almost
/// always get different locks, so their uploads run in parallel.
pub(crate) struct BlobLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for BlobLocks {
    fn default() -> Self {
        Self {
            stripes: (0..BLOB_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }
}

/// Number of locks that [`BlobLocks`] spreads the digests over.
const BLOB_LOCK_STRIPES: usize = 64;

impl BlobLocks {
    /// Waits for the lock of `digest`, a SHA-256 in hex.
    pub(crate) async fn lock(&self, digest: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = digest
            .get(..2)
            .and_then(|prefix| usize::from_str_radix(prefix, 16).ok())
            .unwrap_or(0)
            % self.stripes.len();
        self.stripes[stripe].lock().await
    }
}

/// Checks that a tag can name a file: letters, digits, `.`, `_`, `-`, not
/// starting with `.`.
pub fn validate_tag(tag: &str) -> Result<(), String> {
    let valid = !tag.is_empty()
        && tag.len() <= 200
        && !tag.starts_with('.')
        && tag.chars().all(|character| {
            character.is_ascii_alphanumeric() || matches!(character, '.' | '_' | '-')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid artifact tag {tag:?}: use 1 to 200 letters, digits, '.', '_' or '-', not starting with '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::BlobLocks;
    use std::time::Duration;

    #[tokio::test]
    async fn blob_locks_block_the_same_digest_only() {
        let locks = BlobLocks::default();
        let first = "00".repeat(32);
        let other = "01".repeat(32);
        let _first_guard = locks.lock(&first).await;
        let wait = Duration::from_millis(100);
        assert!(
            tokio::time::timeout(wait, locks.lock(&other)).await.is_ok(),
            "another digest must not wait"
        );
        assert!(
            tokio::time::timeout(wait, locks.lock(&first))
                .await
                .is_err(),
            "the same digest must wait"
        );
    }
}
