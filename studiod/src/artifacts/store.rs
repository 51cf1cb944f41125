//! The artifact store: blobs (packed artifacts) addressed by the SHA-256 of
//! their bytes. Every backend (the local directory now, S3 and GCS later)
//! implements [`ArtifactStore`]; everything above it is the same for all.

use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// A readable blob whose digest is checked when the last byte is read.
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("blob {0} not found in the artifact store")]
    NotFound(String),
    #[error("invalid blob digest {0:?}: expected 64 lowercase hex digits")]
    InvalidDigest(String),
    /// The message contains the error's, so the error is not chained as
    /// a source as well, where `{:#}` would print it twice.
    #[error("artifact store at {path}: {error}")]
    Io { path: String, error: std::io::Error },
}

impl StoreError {
    pub fn io(path: &Path, error: std::io::Error) -> Self {
        StoreError::Io {
            path: path.display().to_string(),
            error,
        }
    }
}

/// Size of one stored blob, as `list` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: String,
    pub size: u64,
}

/// A content-addressed blob store. Object safe, so the daemon holds it as
/// `Arc<dyn ArtifactStore>` whatever the backend.
///
/// Invariants every backend keeps: a blob appears under its digest only
/// once complete (no reader sees a partial blob), and `get` fails with
/// `InvalidData` at the end of a blob whose bytes do not match its digest.
#[async_trait::async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Stores the file at `source` under `digest`, which the caller computed
    /// while writing it. The store takes the file over (it may move or
    /// delete it). Returns false when the blob was already stored.
    async fn put(&self, digest: &str, source: &Path) -> Result<bool, StoreError> {
        self.put_counting(digest, source, &Arc::default()).await
    }

    /// Stores a blob as [`put`](Self::put) does, keeping `progress` up to
    /// date for a progress display.
    async fn put_counting(
        &self,
        digest: &str,
        source: &Path,
        progress: &Arc<UploadProgress>,
    ) -> Result<bool, StoreError>;

    /// Opens a blob for streaming.
    async fn get(&self, digest: &str) -> Result<BlobReader, StoreError>;

    async fn exists(&self, digest: &str) -> Result<bool, StoreError>;

    /// Removes a blob; removing a missing blob is not an error.
    async fn delete(&self, digest: &str) -> Result<(), StoreError>;

    async fn list(&self) -> Result<Vec<BlobInfo>, StoreError>;
}

/// Progress of one upload to the store.
#[derive(Debug, Default)]
pub struct UploadProgress {
    /// Bytes of the blob sent so far; set back when an upload starts over.
    pub sent: AtomicU64,
    /// The last failed try while the upload waits to try again.
    retrying: std::sync::Mutex<Option<String>>,
}

impl UploadProgress {
    pub fn set_retrying(&self, retrying: Option<String>) {
        *self
            .retrying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = retrying;
    }

    pub fn retrying(&self) -> Option<String> {
        self.retrying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Checks that `digest` is a SHA-256 in lowercase hex, so that it can name a
/// file or an object without escaping.
pub fn validate_digest(digest: &str) -> Result<(), StoreError> {
    let valid = digest.len() == 64
        && digest
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
    if valid {
        Ok(())
    } else {
        Err(StoreError::InvalidDigest(digest.to_string()))
    }
}

/// Wraps a reader and fails at its end when the bytes read do not hash to
/// `expected`.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    expected: String,
    checked: bool,
}

impl<R> VerifyingReader<R> {
    pub fn new(inner: R, expected: &str) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            expected: expected.to_string(),
            checked: false,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for VerifyingReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buffer.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(context, buffer) {
            Poll::Ready(Ok(())) => {
                let read = &buffer.filled()[before..];
                if !read.is_empty() {
                    this.hasher.update(read);
                    return Poll::Ready(Ok(()));
                }
                if !this.checked {
                    this.checked = true;
                    let actual = hex(&std::mem::take(&mut this.hasher).finalize());
                    if actual != this.expected {
                        return Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!(
                                "blob {} is corrupt: its content hashes to {actual}; capture the artifact again",
                                this.expected
                            ),
                        )));
                    }
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}
