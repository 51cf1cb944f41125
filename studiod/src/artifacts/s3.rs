//! The S3 artifact store (`storage: {type: s3, bucket, endpoint, region,
//! profile}`): one object a blob, under the same `blobs/<digest>.tar.gz`
//! layout as the local store, in any S3-compatible server.
//!
//! Credentials come from the standard AWS chain (environment, the named
//! profile, web identity, container and instance metadata), never from the
//! config or an experiment record. Visibility is atomic. A small blob is
//! one `PutObject`. A large one is a multipart upload, which S3 shows under
//! its key only once `CompleteMultipartUpload` succeeds. A failed multipart
//! upload is aborted so that its parts do not linger.

use super::remote::{blob_key, retry_reporting, ObjectReader, RetryPolicy, BLOB_PREFIX};
use super::store::{
    ArtifactStore, BlobInfo, BlobReader, StoreError, UploadProgress, VerifyingReader,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use futures_util::{StreamExt as _, TryStreamExt as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use studio_core::config::StorageConfig;

/// Blobs up to this size are one `PutObject`; larger ones are multipart.
const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Smallest part; S3 requires at least 5 MiB for every part but the last.
const MIN_PART_SIZE: u64 = 16 * 1024 * 1024;
/// S3 allows at most 10,000 parts in one upload.
const MAX_PARTS: u64 = 10_000;
/// Parts uploaded at the same time.
const PART_CONCURRENCY: usize = 4;
/// Bytes asked for by one ranged `GetObject` when a blob is read.
const READ_RANGE: u64 = 64 * 1024 * 1024;

pub struct S3Store {
    client: Client,
    bucket: String,
    /// `storage.endpoint`, for messages; `None` for AWS itself.
    endpoint: Option<String>,
    retry: RetryPolicy,
}

impl S3Store {
    /// Connects to the bucket of `config`, creating the bucket when it is
    /// missing and the credentials allow it.
    pub async fn open(config: &StorageConfig) -> Result<Self, StoreError> {
        let store = Self::open_existing(config).await?;
        store.ensure_bucket().await?;
        tracing::info!(bucket = store.bucket, endpoint = ?config.endpoint, "opened the S3 artifact store");
        Ok(store)
    }

    /// Connects to the bucket of `config` without checking or creating it,
    /// to read objects of a bucket that is not the artifact store.
    pub async fn open_existing(config: &StorageConfig) -> Result<Self, StoreError> {
        Ok(Self {
            client: client(config).await?,
            bucket: config.bucket.clone().unwrap_or_default(),
            endpoint: config.endpoint.clone(),
            retry: RetryPolicy::for_config(config),
        })
    }

    /// Replaces the retry schedule of whole operations (tests shorten it).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    fn error(&self, key: &str, message: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            path: format!("s3://{}/{key}", self.bucket),
            error: std::io::Error::other(message.to_string()),
        }
    }

    /// Creates the bucket when `HeadBucket` says it does not exist.
    async fn ensure_bucket(&self) -> Result<(), StoreError> {
        let head = self.client.head_bucket().bucket(&self.bucket).send().await;
        let missing = match &head {
            Ok(_) => return Ok(()),
            Err(error) => error
                .as_service_error()
                .is_some_and(|service| service.is_not_found()),
        };
        if !missing {
            let error = head.err().map(|error| describe(&error));
            let endpoint = self
                .endpoint
                .as_deref()
                .unwrap_or("the AWS endpoint of the region");
            return Err(self.error(
                "",
                format!(
                    "cannot reach the bucket at {endpoint}: {}; check storage.endpoint, storage.region and the AWS credentials",
                    error.unwrap_or_default()
                ),
            ));
        }
        let mut request = self.client.create_bucket().bucket(&self.bucket);
        let region = self
            .client
            .config()
            .region()
            .map(|region| region.to_string());
        if let Some(region) = region.filter(|region| region != "us-east-1") {
            request = request.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(region.as_str().into())
                    .build(),
            );
        }
        match request.send().await {
            Ok(_) => {
                tracing::info!(bucket = self.bucket, "created the S3 bucket for artifacts");
                Ok(())
            }
            Err(error)
                if error.as_service_error().is_some_and(|service| {
                    service.is_bucket_already_owned_by_you()
                }) =>
            {
                Ok(())
            }
            Err(error) => Err(self.error(
                "",
                format!(
                    "the bucket does not exist and cannot be created: {}; create it or use credentials that may",
                    describe(&error)
                ),
            )),
        }
    }

    /// Uploads `source` under `key` once, as one request or as a multipart
    /// upload; S3 checks the SHA-256 of every request body.
    async fn upload(
        &self,
        key: &str,
        source: &Path,
        size: u64,
        sent: &AtomicU64,
    ) -> Result<(), String> {
        sent.store(0, Ordering::Relaxed);
        if size <= MULTIPART_THRESHOLD {
            let body = ByteStream::from_path(source)
                .await
                .map_err(|error| error.to_string())?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .body(body)
                .send()
                .await
                .map_err(|error| describe(&error))?;
            sent.store(size, Ordering::Relaxed);
            return Ok(());
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(|error| describe(&error))?;
        let upload_id = created
            .upload_id()
            .ok_or("the server returned no multipart upload id")?
            .to_string();
        let result = self.upload_parts(key, &upload_id, source, size, sent).await;
        if result.is_err() {
            // Best effort: a server that is down keeps the parts until its
            // lifecycle rules abort the upload.
            if let Err(error) = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await
            {
                tracing::warn!(
                    key,
                    error = describe(&error),
                    "cannot abort a failed multipart upload"
                );
            }
        }
        result
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        source: &Path,
        size: u64,
        sent: &AtomicU64,
    ) -> Result<(), String> {
        let part_size = MIN_PART_SIZE.max(size.div_ceil(MAX_PARTS));
        let count = size.div_ceil(part_size);
        let mut parts: Vec<CompletedPart> = futures_util::stream::iter(0..count)
            .map(|index| {
                let offset = index * part_size;
                let length = part_size.min(size - offset);
                async move {
                    let part = self
                        .upload_part(key, upload_id, source, index, offset, length)
                        .await?;
                    sent.fetch_add(length, Ordering::Relaxed);
                    Ok::<_, String>(part)
                }
            })
            .buffer_unordered(PART_CONCURRENCY)
            .try_collect()
            .await?;
        parts.sort_by_key(|part| part.part_number());
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|error| describe(&error))?;
        Ok(())
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        source: &Path,
        index: u64,
        offset: u64,
        length: u64,
    ) -> Result<CompletedPart, String> {
        let part_number = i32::try_from(index + 1).map_err(|error| error.to_string())?;
        let body = ByteStream::read_from()
            .path(source)
            .offset(offset)
            .length(Length::Exact(length))
            .build()
            .await
            .map_err(|error| error.to_string())?;
        let uploaded = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(body)
            .send()
            .await
            .map_err(|error| describe(&error))?;
        Ok(CompletedPart::builder()
            .part_number(part_number)
            .set_e_tag(uploaded.e_tag().map(str::to_string))
            .set_checksum_sha256(uploaded.checksum_sha256().map(str::to_string))
            .build())
    }

    /// Returns the size of the object at `key`, or `None` when it is absent.
    async fn object_size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(
                head.content_length()
                    .and_then(|length| u64::try_from(length).ok())
                    .unwrap_or(0),
            )),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_not_found()) =>
            {
                Ok(None)
            }
            Err(error) => Err(self.error(key, describe(&error))),
        }
    }

    /// Streams `key` as a sequence of ranged `GetObject` requests, so that a
    /// connection lost in the middle of a large blob resumes at the byte
    /// where it stopped instead of starting over.
    fn ranged_stream(
        &self,
        key: String,
        size: u64,
    ) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
        struct State {
            client: Client,
            bucket: String,
            key: String,
            size: u64,
            offset: u64,
            body: Option<ByteStream>,
            retry: RetryPolicy,
        }
        let state = State {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key,
            size,
            offset: 0,
            body: None,
            retry: self.retry.clone(),
        };
        futures_util::stream::try_unfold(state, |mut state| async move {
            let mut failures = 0;
            loop {
                if let Some(body) = state.body.as_mut() {
                    match body.next().await {
                        Some(Ok(chunk)) => {
                            state.offset += chunk.len() as u64;
                            return Ok(Some((chunk, state)));
                        }
                        None => state.body = None,
                        Some(Err(error)) => {
                            state.body = None;
                            failures += 1;
                            if failures >= state.retry.attempts {
                                return Err(std::io::Error::other(format!(
                                    "reading s3://{}/{} failed at byte {}: {error}",
                                    state.bucket, state.key, state.offset
                                )));
                            }
                            tracing::warn!(key = state.key, offset = state.offset, %error, "S3 read interrupted; resuming");
                            tokio::time::sleep(state.retry.delay(failures)).await;
                        }
                    }
                    continue;
                }
                if state.offset >= state.size {
                    return Ok(None);
                }
                let end = (state.offset + READ_RANGE).min(state.size) - 1;
                let response = state
                    .client
                    .get_object()
                    .bucket(&state.bucket)
                    .key(&state.key)
                    .range(format!("bytes={}-{end}", state.offset))
                    .send()
                    .await;
                match response {
                    Ok(output) => state.body = Some(output.body),
                    Err(error) => {
                        failures += 1;
                        if failures >= state.retry.attempts {
                            return Err(std::io::Error::other(format!(
                                "reading s3://{}/{} failed: {}",
                                state.bucket,
                                state.key,
                                describe(&error)
                            )));
                        }
                        tokio::time::sleep(state.retry.delay(failures)).await;
                    }
                }
            }
        })
    }

    /// Downloads `key` (any object, not only blobs) to `destination`,
    /// through a temporary file renamed into place when complete.
    pub async fn download_object(&self, key: &str, destination: &Path) -> Result<u64, StoreError> {
        let size = self
            .object_size(key)
            .await?
            .ok_or_else(|| self.error(key, "object not found"))?;
        let stream = self.ranged_stream(key.to_string(), size);
        super::remote::write_stream(stream, destination).await?;
        Ok(size)
    }

    /// Lists the keys and sizes of the objects under `prefix`.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| self.error(prefix, describe(&error)))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    let size = object
                        .size()
                        .and_then(|size| u64::try_from(size).ok())
                        .unwrap_or(0);
                    objects.push((key.to_string(), size));
                }
            }
        }
        Ok(objects)
    }
}

#[async_trait::async_trait]
impl ArtifactStore for S3Store {
    async fn put_counting(
        &self,
        digest: &str,
        source: &Path,
        progress: &Arc<UploadProgress>,
    ) -> Result<bool, StoreError> {
        let key = blob_key(digest)?;
        let size = tokio::fs::metadata(source)
            .await
            .map_err(|error| StoreError::io(source, error))?
            .len();
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
                    == Some(size)
                {
                    return Ok(false);
                }
                self.upload(&key, source, size, &progress.sent).await?;
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
        let size = self
            .object_size(&key)
            .await?
            .ok_or_else(|| StoreError::NotFound(digest.to_string()))?;
        let reader = tokio_util::io::StreamReader::new(Box::pin(self.ranged_stream(key, size)));
        Ok(Box::pin(VerifyingReader::new(reader, digest)))
    }

    async fn exists(&self, digest: &str) -> Result<bool, StoreError> {
        let key = blob_key(digest)?;
        Ok(self.object_size(&key).await?.is_some())
    }

    async fn delete(&self, digest: &str) -> Result<(), StoreError> {
        let key = blob_key(digest)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|error| self.error(&key, describe(&error)))?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<BlobInfo>, StoreError> {
        Ok(super::remote::blobs_of_objects(
            self.list_objects(BLOB_PREFIX).await?,
        ))
    }
}

/// Builds the client: the AWS chain for credentials and region, a rustls
/// (ring) HTTPS client that also speaks plain HTTP to local servers, and
/// path-style addressing when an endpoint is given, which S3-compatible
/// servers expect.
/// Builds the S3 client of `config`, with credentials from the AWS chain.
/// When the chain finds none, such as for a profile that is not defined,
/// the error names the places credentials may come from.
async fn client(config: &StorageConfig) -> Result<Client, StoreError> {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client)
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(4)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(5)),
        )
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .build(),
        );
    if let Some(profile) = &config.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &config.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let shared = loader.load().await;
    check_credentials(&shared, config).await?;
    let mut builder = aws_sdk_s3::config::Builder::from(&shared);
    if shared.region().is_none() {
        builder = builder.region(aws_config::Region::new("us-east-1"));
    }
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint).force_path_style(true);
    }
    Ok(Client::from_conf(builder.build()))
}

async fn check_credentials(
    shared: &aws_config::SdkConfig,
    config: &StorageConfig,
) -> Result<(), StoreError> {
    use aws_sdk_s3::config::ProvideCredentials as _;
    let Some(provider) = shared.credentials_provider() else {
        return Ok(());
    };
    let Err(error) = provider.provide_credentials().await else {
        return Ok(());
    };
    let bucket = config.bucket.as_deref().unwrap_or_default();
    let message = match &config.profile {
        Some(profile) => format!(
            "no AWS credentials for storage.profile '{profile}' ({error}): define [{profile}] in ~/.aws/credentials or [profile {profile}] in ~/.aws/config (or in the files that AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE name)"
        ),
        None => format!(
            "no AWS credentials ({error}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, name a profile of ~/.aws/config in storage.profile, or run on an instance with a role"
        ),
    };
    tracing::error!(bucket, profile = ?config.profile, %error, "no AWS credentials for the S3 artifact store");
    Err(StoreError::Io {
        path: format!("s3://{bucket}"),
        error: std::io::Error::other(message),
    })
}

#[async_trait::async_trait]
impl ObjectReader for S3Store {
    async fn list_prefix(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.list_objects(prefix).await
    }

    async fn download(&self, key: &str, destination: &Path) -> Result<u64, StoreError> {
        self.download_object(key, destination).await
    }
}

/// Describes an SDK error in one line: the service's error code and
/// message, or the root cause of a failed connection, without the raw
/// response that `DisplayErrorContext` prints.
fn describe<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match error {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            match (inner.code(), inner.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                _ => inner.to_string(),
            }
        }
        SdkError::TimeoutError(_) => "the request timed out".to_string(),
        SdkError::DispatchFailure(_) => format!("cannot connect: {}", root_cause(error)),
        _ => root_cause(error),
    }
}

/// Returns the message of the innermost source of `error`.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
