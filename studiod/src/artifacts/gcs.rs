//! The Google Cloud Storage artifact store (`storage: {type: gcs, bucket,
//! endpoint, project}`; `type: gcloud` of StudioML files is the same): one
//! object a blob, under the same `blobs/<digest>.tar.gz` layout as the local
//! store.
//!
//! Object data goes through Google's `google-cloud-storage` client: uploads
//! above [`RESUMABLE_THRESHOLD`] are resumable uploads, which GCS shows
//! under their name only once finalized, and the client sends CRC32C
//! checksums that the service verifies. Listing, deleting, metadata and
//! bucket creation use the JSON API over the same credentials, because that
//! crate offers them only over gRPC (`StorageControl`), which emulators
//! such as fake-gcs-server do not serve.
//!
//! Credentials: `GOOGLE_APPLICATION_CREDENTIALS` or Google's default chain.
//! When `STORAGE_EMULATOR_HOST` is set (the variable Google's other client
//! libraries read), requests go to that emulator without credentials.

use super::remote::{blob_key, retry_reporting, ObjectReader, RetryPolicy, BLOB_PREFIX};
use super::store::{
    ArtifactStore, BlobInfo, BlobReader, StoreError, UploadProgress, VerifyingReader,
};
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use google_cloud_gax::retry_policy::RetryPolicyExt as _;
use google_cloud_storage::client::Storage;
use google_cloud_storage::model_ext::ReadRange;
use google_cloud_storage::retry_policy::RetryableErrors;
use google_cloud_storage::streaming_source::{Seek, SizeHint, StreamingSource};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use studio_core::config::StorageConfig;

/// Uploads above this size are resumable; smaller ones are one request.
/// NOTE: 0, so every upload is resumable, because fake-gcs-server 1.54
/// returns a wrong CRC32C for single-request (multipart) uploads, which
/// the client rejects. A resumable upload of a small blob costs one more
/// request.
const RESUMABLE_THRESHOLD: usize = 0;
/// Bytes sent per request of a resumable upload (a multiple of 256 KiB).
const RESUMABLE_CHUNK: usize = 16 * 1024 * 1024;
/// Tries of one request by the client before the store's own retry of the
/// whole operation takes over; the client's default retries for minutes.
const CLIENT_ATTEMPTS: u32 = 4;
/// Bytes read from the blob file per payload chunk.
const READ_CHUNK: usize = 256 * 1024;
const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

pub struct GcsStore {
    storage: Storage,
    http: reqwest::Client,
    credentials: Credentials,
    /// Base URL of the server, without a trailing `/`.
    endpoint: String,
    bucket: String,
    project: Option<String>,
    retry: RetryPolicy,
}

impl GcsStore {
    /// Connects to the bucket of `config`, creating the bucket when it is
    /// missing and the credentials allow it.
    pub async fn open(config: &StorageConfig) -> Result<Self, StoreError> {
        let store = Self::open_existing(config).await?;
        store.ensure_bucket().await?;
        tracing::info!(
            bucket = store.bucket,
            endpoint = store.endpoint,
            "opened the GCS artifact store"
        );
        Ok(store)
    }

    /// Connects without checking or creating the bucket.
    pub async fn open_existing(config: &StorageConfig) -> Result<Self, StoreError> {
        // Google's credential chain builds HTTPS clients (for the metadata
        // server among others), which need the provider installed first.
        install_crypto_provider();
        let emulator = std::env::var("STORAGE_EMULATOR_HOST")
            .ok()
            .filter(|host| !host.is_empty());
        let (endpoint, credentials) = match emulator {
            Some(host) if host.starts_with("http://") || host.starts_with("https://") => {
                (host, anonymous())
            }
            Some(host) => (format!("http://{host}"), anonymous()),
            None => {
                let credentials = google_cloud_auth::credentials::Builder::default()
                    .build()
                    .map_err(|error| {
                        gcs_error(
                            config.bucket.as_deref().unwrap_or_default(),
                            "",
                            format!("no Google credentials: {error}; set GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`"),
                        )
                    })?;
                let endpoint = config
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
                (endpoint, credentials)
            }
        };
        Self::connect(config, endpoint, credentials).await
    }

    /// Connects to `endpoint` with explicit credentials.
    pub async fn connect(
        config: &StorageConfig,
        endpoint: String,
        credentials: Credentials,
    ) -> Result<Self, StoreError> {
        install_crypto_provider();
        let bucket = config.bucket.clone().unwrap_or_default();
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let storage = Storage::builder()
            .with_endpoint(endpoint.clone())
            .with_credentials(credentials.clone())
            .with_resumable_upload_threshold(RESUMABLE_THRESHOLD)
            .with_resumable_upload_buffer_size(RESUMABLE_CHUNK)
            .with_retry_policy(RetryableErrors.with_attempt_limit(CLIENT_ATTEMPTS))
            .build()
            .await
            .map_err(|error| {
                gcs_error(&bucket, "", format!("cannot create the client: {error}"))
            })?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|error| gcs_error(&bucket, "", error))?;
        Ok(Self {
            storage,
            http,
            credentials,
            endpoint,
            bucket,
            project: config.project.clone(),
            retry: RetryPolicy::for_config(config),
        })
    }

    /// Replaces the retry schedule of whole operations (tests shorten it).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    fn bucket_path(&self) -> String {
        format!("projects/_/buckets/{}", self.bucket)
    }

    fn error(&self, key: &str, message: impl std::fmt::Display) -> StoreError {
        gcs_error(&self.bucket, key, message)
    }

    /// Sends a JSON API request with the credentials' headers. `segments`
    /// are appended to `/storage/v1` and percent-encoded one by one, so an
    /// object name's `/` stays part of the name.
    async fn json_request(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, String> {
        let mut url = reqwest::Url::parse(&format!("{}/storage/v1", self.endpoint))
            .map_err(|error| format!("invalid storage.endpoint {:?}: {error}", self.endpoint))?;
        url.path_segments_mut()
            .map_err(|()| format!("invalid storage.endpoint {:?}", self.endpoint))?
            .extend(segments);
        let mut request = self.http.request(method, url).query(query);
        match self.credentials.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => request = request.headers(data),
            Ok(CacheableResource::NotModified) => {}
            Err(error) => {
                return Err(format!(
                    "cannot get Google credentials ({error}); set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, run `gcloud auth application-default login`, or run on Google Cloud with a service account"
                ))
            }
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        request.send().await.map_err(|error| error.to_string())
    }

    /// Creates the bucket when the JSON API says it does not exist.
    pub async fn ensure_bucket(&self) -> Result<(), StoreError> {
        let response = self
            .json_request(reqwest::Method::GET, &["b", &self.bucket], &[], None)
            .await
            .map_err(|error| {
                if error.starts_with("cannot get Google credentials") {
                    return self.error("", error);
                }
                let source = if std::env::var_os("STORAGE_EMULATOR_HOST").is_some() {
                    "STORAGE_EMULATOR_HOST"
                } else {
                    "storage.endpoint"
                };
                self.error(
                    "",
                    format!(
                        "cannot reach the bucket at {}: {error}; check {source}",
                        self.endpoint
                    ),
                )
            })?;
        if response.status().is_success() {
            return Ok(());
        }
        if response.status() != reqwest::StatusCode::NOT_FOUND {
            return Err(self.error(
                "",
                format!(
                    "cannot reach the bucket: the server returned {}; check the Google credentials",
                    response.status()
                ),
            ));
        }
        let project = self.project.clone().unwrap_or_else(|| "_".into());
        let response = self
            .json_request(
                reqwest::Method::POST,
                &["b"],
                &[("project", project.as_str())],
                Some(serde_json::json!({ "name": self.bucket })),
            )
            .await
            .map_err(|error| self.error("", error))?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::CONFLICT {
            tracing::info!(bucket = self.bucket, "created the GCS bucket for artifacts");
            return Ok(());
        }
        Err(self.error(
            "",
            format!("the bucket does not exist and cannot be created (the server returned {status}); create it, set storage.project, or use credentials that may"),
        ))
    }

    /// Returns the size of the object at `key`, or `None` when it is absent.
    async fn object_size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let response = self
            .json_request(
                reqwest::Method::GET,
                &["b", &self.bucket, "o", key],
                &[],
                None,
            )
            .await
            .map_err(|error| self.error(key, error))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(self.error(key, format!("the server returned {}", response.status())));
        }
        let metadata = read_json(response)
            .await
            .map_err(|error| self.error(key, error))?;
        Ok(Some(json_size(&metadata)))
    }

    /// Uploads `source` under `key`. Writing a blob again stores the same
    /// bytes under the same name, so the write is idempotent and the client
    /// may retry it. NOTE: not `ifGenerationMatch=0`, which fake-gcs-server
    /// 1.54 rejects with 412 for objects that do not exist.
    async fn upload(
        &self,
        key: &str,
        source: &Path,
        progress: &Arc<UploadProgress>,
    ) -> Result<(), String> {
        let file = tokio::fs::File::open(source)
            .await
            .map_err(|error| format!("cannot open {}: {error}", source.display()))?;
        // With the checksum known, the client sends the file once instead
        // of reading it a first time to checksum it, so the sent-bytes
        // count is the upload's progress.
        let source_path = source.to_path_buf();
        let crc32c = tokio::task::spawn_blocking(move || file_crc32c(&source_path))
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| format!("cannot read {}: {error}", source.display()))?;
        progress.sent.store(0, Ordering::Relaxed);
        let payload = CountingFile {
            file,
            progress: progress.clone(),
        };
        self.storage
            .write_object(self.bucket_path(), key, payload)
            .with_known_crc32c(crc32c)
            .with_idempotency(true)
            .send_unbuffered()
            .await
            .map_err(|error| error.to_string())?;
        Ok(())
    }

    /// Streams `key`; the client resumes an interrupted read at the byte
    /// where it stopped and checks CRC32C on full reads.
    fn stream_object(
        &self,
        key: String,
    ) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
        enum State {
            Start(Box<Storage>, String, String),
            Reading(
                google_cloud_storage::read_object::ReadObjectResponse,
                String,
            ),
        }
        let state = State::Start(Box::new(self.storage.clone()), self.bucket_path(), key);
        futures_util::stream::try_unfold(state, |state| async move {
            let (mut response, name) = match state {
                State::Start(storage, bucket, key) => {
                    let response = storage
                        .read_object(&bucket, &key)
                        .set_read_range(ReadRange::all())
                        .send()
                        .await
                        .map_err(|error| {
                            std::io::Error::other(format!("reading {bucket}/{key} failed: {error}"))
                        })?;
                    (response, key)
                }
                State::Reading(response, name) => (response, name),
            };
            match response.next().await {
                Some(Ok(chunk)) => Ok(Some((chunk, State::Reading(response, name)))),
                Some(Err(error)) => Err(std::io::Error::other(format!(
                    "reading {name} failed: {error}"
                ))),
                None => Ok(None),
            }
        })
    }

    /// Downloads `key` (any object) to `destination` through a temporary
    /// file renamed into place when complete.
    pub async fn download_object(&self, key: &str, destination: &Path) -> Result<u64, StoreError> {
        let size = self
            .object_size(key)
            .await?
            .ok_or_else(|| self.error(key, "object not found"))?;
        super::remote::write_stream(self.stream_object(key.to_string()), destination).await?;
        Ok(size)
    }

    /// Lists the names and sizes of the objects under `prefix`.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut objects = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut query = vec![("prefix", prefix)];
            if let Some(token) = &page_token {
                query.push(("pageToken", token.as_str()));
            }
            let response = self
                .json_request(
                    reqwest::Method::GET,
                    &["b", &self.bucket, "o"],
                    &query,
                    None,
                )
                .await
                .map_err(|error| self.error(prefix, error))?;
            if !response.status().is_success() {
                return Err(self.error(
                    prefix,
                    format!("listing failed: the server returned {}", response.status()),
                ));
            }
            let page = read_json(response)
                .await
                .map_err(|error| self.error(prefix, error))?;
            for item in page["items"].as_array().into_iter().flatten() {
                if let Some(name) = item["name"].as_str() {
                    objects.push((name.to_string(), json_size(item)));
                }
            }
            match page["nextPageToken"].as_str() {
                Some(token) if !token.is_empty() => page_token = Some(token.to_string()),
                _ => return Ok(objects),
            }
        }
    }
}

/// Returns the CRC32C of the file at `path`. Blocking.
fn file_crc32c(path: &Path) -> std::io::Result<u32> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0_u8; 1 << 20];
    let mut checksum = 0;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(checksum);
        }
        checksum = crc32c::crc32c_append(checksum, &buffer[..read]);
    }
}

/// The blob file as an upload payload that counts the bytes handed to the
/// client; a resumed upload seeks back and the count follows.
struct CountingFile {
    file: tokio::fs::File,
    progress: Arc<UploadProgress>,
}

impl StreamingSource for CountingFile {
    type Error = std::io::Error;

    async fn next(&mut self) -> Option<Result<bytes::Bytes, Self::Error>> {
        let mut buffer = bytes::BytesMut::zeroed(READ_CHUNK);
        match tokio::io::AsyncReadExt::read(&mut self.file, &mut buffer).await {
            Err(error) => Some(Err(error)),
            Ok(0) => None,
            Ok(read) => {
                buffer.truncate(read);
                self.progress.sent.fetch_add(read as u64, Ordering::Relaxed);
                Some(Ok(buffer.freeze()))
            }
        }
    }

    async fn size_hint(&self) -> Result<SizeHint, Self::Error> {
        let length = self.file.metadata().await?.len();
        Ok(SizeHint::with_exact(length))
    }
}

impl Seek for CountingFile {
    type Error = std::io::Error;

    async fn seek(&mut self, offset: u64) -> Result<(), Self::Error> {
        use tokio::io::AsyncSeekExt as _;
        self.file.seek(std::io::SeekFrom::Start(offset)).await?;
        self.progress.sent.store(offset, Ordering::Relaxed);
        Ok(())
    }
}

#[async_trait::async_trait]
impl ArtifactStore for GcsStore {
    async fn put_counting(
        &self,
        digest: &str,
        source: &Path,
        progress: &Arc<UploadProgress>,
    ) -> Result<bool, StoreError> {
        let key = blob_key(digest)?;
        let report = |retrying| progress.set_retrying(retrying);
        let stored = retry_reporting(&self.retry, &key, &report, |attempt| {
            let key = key.clone();
            async move {
                if attempt > 1 {
                    // A restarted server may have lost the bucket.
                    self.ensure_bucket()
                        .await
                        .map_err(|error| error.to_string())?;
                }
                if self
                    .object_size(&key)
                    .await
                    .map_err(|error| error.to_string())?
                    .is_some()
                {
                    return Ok(false);
                }
                self.upload(&key, source, progress).await?;
                Ok(true)
            }
        })
        .await
        .map_err(|error| self.error(&key, error))?;
        let _ = tokio::fs::remove_file(source).await;
        Ok(stored)
    }

    async fn get(&self, digest: &str) -> Result<BlobReader, StoreError> {
        let key = blob_key(digest)?;
        if self.object_size(&key).await?.is_none() {
            return Err(StoreError::NotFound(digest.to_string()));
        }
        let reader = tokio_util::io::StreamReader::new(Box::pin(self.stream_object(key)));
        Ok(Box::pin(VerifyingReader::new(reader, digest)))
    }

    async fn exists(&self, digest: &str) -> Result<bool, StoreError> {
        let key = blob_key(digest)?;
        Ok(self.object_size(&key).await?.is_some())
    }

    async fn delete(&self, digest: &str) -> Result<(), StoreError> {
        let key = blob_key(digest)?;
        let response = self
            .json_request(
                reqwest::Method::DELETE,
                &["b", &self.bucket, "o", &key],
                &[],
                None,
            )
            .await
            .map_err(|error| self.error(&key, error))?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(self.error(&key, format!("delete failed: the server returned {status}")))
    }

    async fn list(&self) -> Result<Vec<BlobInfo>, StoreError> {
        Ok(super::remote::blobs_of_objects(
            self.list_objects(BLOB_PREFIX).await?,
        ))
    }
}

#[async_trait::async_trait]
impl ObjectReader for GcsStore {
    async fn list_prefix(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.list_objects(prefix).await
    }

    async fn download(&self, key: &str, destination: &Path) -> Result<u64, StoreError> {
        self.download_object(key, destination).await
    }
}

/// Credentials that add no header, for emulators.
pub fn anonymous() -> Credentials {
    google_cloud_auth::credentials::anonymous::Builder::new().build()
}

/// Installs rustls' ring provider as the process default, which Google's
/// crates need when built without their aws-lc default. A provider that is
/// already installed stays.
/// NOTE: rustls 0.23.48 deprecates ring's provider for lacking
/// post-quantum key exchange; Studio keeps ring to avoid building aws-lc.
#[allow(deprecated)]
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn gcs_error(bucket: &str, key: &str, message: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: format!("gs://{bucket}/{key}"),
        error: std::io::Error::other(message.to_string()),
    }
}

/// Size of an object resource of the JSON API, which sends it as a string.
fn json_size(object: &serde_json::Value) -> u64 {
    match &object["size"] {
        serde_json::Value::String(text) => text.parse().unwrap_or(0),
        value => value.as_u64().unwrap_or(0),
    }
}

async fn read_json(response: reqwest::Response) -> Result<serde_json::Value, String> {
    let body = response.bytes().await.map_err(|error| error.to_string())?;
    serde_json::from_slice(&body).map_err(|error| format!("invalid JSON from the server: {error}"))
}
