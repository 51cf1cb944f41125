//! The local artifact store: one file a blob under `<home>/artifacts`
//! (`storage: type: local`, the default).

use super::store::{
    validate_digest, ArtifactStore, BlobInfo, BlobReader, StoreError, UploadProgress,
    VerifyingReader,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Blobs live in `<root>/blobs/<digest>.tar.gz`; `<root>/tmp` holds files
/// being written, on the same file system so that `put` is a rename.
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Opens the store, creating its directories when needed.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for directory in [root.join("blobs"), root.join("tmp")] {
            std::fs::create_dir_all(&directory)
                .map_err(|error| StoreError::io(&directory, error))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// Directory for temporary files that `put` can rename into place.
    pub fn temp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        validate_digest(digest)?;
        Ok(self.root.join("blobs").join(format!("{digest}.tar.gz")))
    }
}

#[async_trait::async_trait]
impl ArtifactStore for LocalStore {
    async fn put_counting(
        &self,
        digest: &str,
        source: &Path,
        progress: &Arc<UploadProgress>,
    ) -> Result<bool, StoreError> {
        let target = self.blob_path(digest)?;
        if tokio::fs::try_exists(&target).await.unwrap_or(false) {
            let _ = tokio::fs::remove_file(source).await;
            return Ok(false);
        }
        // A rename is atomic within one file system; a source elsewhere is
        // first copied next to the target under a temporary name.
        if tokio::fs::rename(source, &target).await.is_err() {
            let temporary = self
                .temp_dir()
                .join(format!("{digest}.{}", uuid::Uuid::new_v4().simple()));
            tokio::fs::copy(source, &temporary)
                .await
                .map_err(|error| StoreError::io(source, error))?;
            tokio::fs::rename(&temporary, &target)
                .await
                .map_err(|error| StoreError::io(&target, error))?;
            let _ = tokio::fs::remove_file(source).await;
        }
        if let Ok(metadata) = tokio::fs::metadata(&target).await {
            progress.sent.store(metadata.len(), Ordering::Relaxed);
        }
        Ok(true)
    }

    async fn get(&self, digest: &str) -> Result<BlobReader, StoreError> {
        let path = self.blob_path(digest)?;
        match tokio::fs::File::open(&path).await {
            Ok(file) => Ok(Box::pin(VerifyingReader::new(file, digest))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(digest.to_string()))
            }
            Err(error) => Err(StoreError::io(&path, error)),
        }
    }

    async fn exists(&self, digest: &str) -> Result<bool, StoreError> {
        let path = self.blob_path(digest)?;
        tokio::fs::try_exists(&path)
            .await
            .map_err(|error| StoreError::io(&path, error))
    }

    async fn delete(&self, digest: &str) -> Result<(), StoreError> {
        let path = self.blob_path(digest)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(StoreError::io(&path, error)),
        }
    }

    async fn list(&self) -> Result<Vec<BlobInfo>, StoreError> {
        let directory = self.root.join("blobs");
        let mut entries = tokio::fs::read_dir(&directory)
            .await
            .map_err(|error| StoreError::io(&directory, error))?;
        let mut blobs = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|error| StoreError::io(&directory, error))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(digest) = name.strip_suffix(".tar.gz") else {
                continue;
            };
            if validate_digest(digest).is_err() {
                continue;
            }
            let size = entry.metadata().await.map_or(0, |metadata| metadata.len());
            blobs.push(BlobInfo {
                digest: digest.to_string(),
                size,
            });
        }
        blobs.sort_by(|left, right| left.digest.cmp(&right.digest));
        Ok(blobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn put_get_delete_round_trip() {
        let directory = tempfile::tempdir().unwrap();
        let store = LocalStore::open(directory.path()).unwrap();
        let source = store.temp_dir().join("blob");
        std::fs::write(&source, b"hello").unwrap();
        let digest = super::super::store::hex(&<sha2::Sha256 as sha2::Digest>::digest(b"hello"));

        assert!(store.put(&digest, &source).await.unwrap());
        assert!(store.exists(&digest).await.unwrap());
        let mut bytes = Vec::new();
        store
            .get(&digest)
            .await
            .unwrap()
            .read_to_end(&mut bytes)
            .await
            .unwrap();
        assert_eq!(bytes, b"hello");
        assert_eq!(store.list().await.unwrap().len(), 1);

        store.delete(&digest).await.unwrap();
        assert!(!store.exists(&digest).await.unwrap());
    }

    #[tokio::test]
    async fn corrupt_blob_fails_on_read() {
        let directory = tempfile::tempdir().unwrap();
        let store = LocalStore::open(directory.path()).unwrap();
        let digest = "0".repeat(64);
        std::fs::write(
            store.blob_path(&digest).unwrap(),
            b"not what the digest says",
        )
        .unwrap();
        let mut bytes = Vec::new();
        let error = store
            .get(&digest)
            .await
            .unwrap()
            .read_to_end(&mut bytes)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("corrupt"), "{error}");
    }

    #[test]
    fn digest_must_be_hex() {
        assert!(validate_digest("../../etc/passwd").is_err());
        assert!(validate_digest(&"A".repeat(64)).is_err());
        assert!(validate_digest(&"a".repeat(64)).is_ok());
    }
}
