//! The artifact store contract, run against every backend: the local
//! directory, S3 (moto's server) and GCS (fake-gcs-server). Each test
//! starts its own servers on free loopback ports and kills them at its end.

use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use studio_core::config::StorageConfig;
use studio_tests::services::{FakeGcs, Moto, TEST_ACCESS_KEY, TEST_SECRET_KEY};
use studio_tests::{stderr, stdout, Studio};
use studiod::artifacts::gcs::GcsStore;
use studiod::artifacts::local::LocalStore;
use studiod::artifacts::remote::{blob_key, RetryPolicy};
use studiod::artifacts::s3::S3Store;
use studiod::artifacts::store::{hex, ArtifactStore, StoreError, UploadProgress};
use tokio::io::AsyncReadExt as _;

#[derive(Debug, Clone, Copy)]
enum Backend {
    Local,
    S3,
    Gcs,
}

const BACKENDS: [Backend; 3] = [Backend::Local, Backend::S3, Backend::Gcs];

/// A store under test with what keeps it alive: its directory or server.
struct Fixture {
    store: Arc<dyn ArtifactStore>,
    /// Where test files are written before `put`.
    staging: PathBuf,
    _directory: tempfile::TempDir,
    moto: Option<Moto>,
    gcs: Option<FakeGcs>,
}

/// Sets the AWS chain's variables to moto's test credentials. Every test
/// sets the same values, so tests running in parallel agree.
fn aws_test_environment() {
    for (name, value) in [
        ("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
    ] {
        std::env::set_var(name, value);
    }
}

fn s3_config(moto: &Moto, bucket: &str) -> StorageConfig {
    StorageConfig {
        kind: "s3".into(),
        bucket: Some(bucket.into()),
        endpoint: Some(moto.endpoint()),
        region: Some("us-east-1".into()),
        ..StorageConfig::default()
    }
}

fn gcs_config(bucket: &str) -> StorageConfig {
    StorageConfig {
        kind: "gcs".into(),
        bucket: Some(bucket.into()),
        project: Some("test".into()),
        ..StorageConfig::default()
    }
}

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        initial_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(2),
    }
}

async fn open_s3(moto: &Moto, retry: RetryPolicy) -> S3Store {
    aws_test_environment();
    S3Store::open(&s3_config(moto, "artifacts"))
        .await
        .expect("open the S3 store")
        .with_retry(retry)
}

async fn open_gcs(gcs: &FakeGcs, retry: RetryPolicy) -> GcsStore {
    let store = GcsStore::connect(
        &gcs_config("artifacts"),
        gcs.endpoint(),
        studiod::artifacts::gcs::anonymous(),
    )
    .await
    .expect("connect to fake-gcs");
    store.ensure_bucket().await.expect("create the bucket");
    store.with_retry(retry)
}

async fn fixture(backend: Backend) -> Fixture {
    let directory = tempfile::tempdir().unwrap();
    let staging = directory.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let (store, moto, gcs): (Arc<dyn ArtifactStore>, _, _) = match backend {
        Backend::Local => (
            Arc::new(LocalStore::open(&directory.path().join("store")).unwrap()),
            None,
            None,
        ),
        Backend::S3 => {
            let moto = Moto::start();
            let store = open_s3(&moto, fast_retry(3)).await;
            (Arc::new(store), Some(moto), None)
        }
        Backend::Gcs => {
            let gcs = FakeGcs::start();
            let store = open_gcs(&gcs, fast_retry(3)).await;
            (Arc::new(store), None, Some(gcs))
        }
    };
    Fixture {
        store,
        staging,
        _directory: directory,
        moto,
        gcs,
    }
}

/// Writes `bytes` to a new staging file and returns its path and digest.
fn stage(staging: &Path, bytes: &[u8]) -> (PathBuf, String) {
    let path = staging.join(uuid_name());
    std::fs::write(&path, bytes).unwrap();
    (path, hex(&Sha256::digest(bytes)))
}

fn uuid_name() -> String {
    use std::sync::atomic::Ordering;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("file-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Writes `size` bytes of a repeatable pseudo-random pattern and returns
/// the path and digest, hashing as it writes.
fn stage_large(staging: &Path, size: u64) -> (PathBuf, String) {
    use std::io::Write as _;
    let path = staging.join(uuid_name());
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut hasher = Sha256::new();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1024 * 1024];
    let mut written = 0;
    while written < size {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let count = (size - written).min(block.len() as u64) as usize;
        file.write_all(&block[..count]).unwrap();
        hasher.update(&block[..count]);
        written += count as u64;
    }
    file.flush().unwrap();
    (path, hex(&hasher.finalize()))
}

async fn read_all(store: &dyn ArtifactStore, digest: &str) -> std::io::Result<Vec<u8>> {
    let mut reader = store.get(digest).await.map_err(std::io::Error::other)?;
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).await?;
    Ok(bytes)
}

/// Reads a blob and returns its SHA-256 and size, without keeping it.
async fn digest_of_blob(store: &dyn ArtifactStore, digest: &str) -> (String, u64) {
    let mut reader = store.get(digest).await.unwrap();
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1024 * 1024];
    let mut size = 0;
    loop {
        let count = reader.read(&mut buffer).await.unwrap();
        if count == 0 {
            break;
        }
        hasher.update(&buffer[..count]);
        size += count as u64;
    }
    (hex(&hasher.finalize()), size)
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_and_dedup() {
    for backend in BACKENDS {
        let fixture = fixture(backend).await;
        let store = fixture.store.as_ref();
        let (path, digest) = stage(&fixture.staging, b"hello artifacts");

        assert!(store.put(&digest, &path).await.unwrap(), "{backend:?}");
        assert!(!path.exists(), "{backend:?}: put must take the file over");
        assert!(store.exists(&digest).await.unwrap(), "{backend:?}");
        assert_eq!(
            read_all(store, &digest).await.unwrap(),
            b"hello artifacts",
            "{backend:?}"
        );

        let (again, same) = stage(&fixture.staging, b"hello artifacts");
        assert_eq!(same, digest);
        assert!(
            !store.put(&digest, &again).await.unwrap(),
            "{backend:?}: second put must dedup"
        );

        let listed = store.list().await.unwrap();
        assert_eq!(listed.len(), 1, "{backend:?}: {listed:?}");
        assert_eq!(listed[0].digest, digest, "{backend:?}");
        assert_eq!(listed[0].size, 15, "{backend:?}");

        store.delete(&digest).await.unwrap();
        assert!(!store.exists(&digest).await.unwrap(), "{backend:?}");
        store
            .delete(&digest)
            .await
            .expect("deleting a missing blob is not an error");
        assert!(store.list().await.unwrap().is_empty(), "{backend:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_blob_fails_on_read() {
    for backend in BACKENDS {
        let fixture = fixture(backend).await;
        let store = fixture.store.as_ref();
        let (path, _) = stage(&fixture.staging, b"not what the digest says");
        let digest = "0".repeat(64);
        store.put(&digest, &path).await.unwrap();

        let error = read_all(store, &digest).await.unwrap_err();
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::InvalidData,
            "{backend:?}: {error}"
        );
        assert!(
            error.to_string().contains("corrupt"),
            "{backend:?}: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_and_invalid_digests() {
    for backend in BACKENDS {
        let fixture = fixture(backend).await;
        let store = fixture.store.as_ref();
        let missing = "1".repeat(64);
        assert!(!store.exists(&missing).await.unwrap(), "{backend:?}");
        assert!(
            matches!(store.get(&missing).await, Err(StoreError::NotFound(_))),
            "{backend:?}"
        );
        for invalid in ["../../etc/passwd", &"A".repeat(64)] {
            assert!(
                matches!(
                    store.exists(invalid).await,
                    Err(StoreError::InvalidDigest(_))
                ),
                "{backend:?}: {invalid}"
            );
            let (path, _) = stage(&fixture.staging, b"x");
            assert!(
                matches!(
                    store.put(invalid, &path).await,
                    Err(StoreError::InvalidDigest(_))
                ),
                "{backend:?}: {invalid}"
            );
        }
    }
}

/// 300 MiB goes through S3's multipart upload and GCS's resumable upload,
/// and is read back intact; while it uploads, no partial blob is visible.
#[tokio::test(flavor = "multi_thread")]
async fn large_blob_round_trip() {
    for backend in [Backend::S3, Backend::Gcs] {
        let fixture = fixture(backend).await;
        let store = fixture.store.clone();
        let (path, digest) = stage_large(&fixture.staging, 300 * 1024 * 1024);

        let size = 300 * 1024 * 1024;
        let progress = Arc::new(UploadProgress::default());
        let upload = {
            let store = store.clone();
            let digest = digest.clone();
            let progress = progress.clone();
            tokio::spawn(async move { store.put_counting(&digest, &path, &progress).await })
        };
        // A blob may appear just before `put` returns, but never partial.
        // The sent-bytes counter moves while the upload runs.
        let mut polls = 0;
        let mut partial_counts = Vec::new();
        while !upload.is_finished() {
            for blob in store.list().await.unwrap() {
                assert_eq!(
                    blob.size, size,
                    "{backend:?}: a partial blob is visible while it uploads"
                );
            }
            let count = progress.sent.load(Ordering::Relaxed);
            if count > 0 && count < size {
                partial_counts.push(count);
            }
            polls += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            polls > 1,
            "{backend:?}: the upload ended before visibility was checked"
        );
        assert!(upload.await.unwrap().unwrap(), "{backend:?}");
        assert_eq!(progress.sent.load(Ordering::Relaxed), size, "{backend:?}");
        assert!(
            !partial_counts.is_empty(),
            "{backend:?}: no progress was counted while the upload ran"
        );
        assert!(
            partial_counts.windows(2).all(|pair| pair[0] <= pair[1]),
            "{backend:?}: progress went back without a retry: {partial_counts:?}"
        );

        let listed = store.list().await.unwrap();
        assert_eq!(listed.len(), 1, "{backend:?}");
        assert_eq!(listed[0].size, 300 * 1024 * 1024, "{backend:?}");
        let (read_digest, size) = digest_of_blob(store.as_ref(), &digest).await;
        assert_eq!(size, 300 * 1024 * 1024, "{backend:?}");
        assert_eq!(read_digest, digest, "{backend:?}");
    }
}

/// A server killed in the middle of an upload and started again: the
/// upload is retried and completes.
#[tokio::test(flavor = "multi_thread")]
async fn upload_retried_after_restart() {
    for backend in [Backend::S3, Backend::Gcs] {
        let mut fixture = fixture(backend).await;
        let (path, digest) = stage_large(&fixture.staging, 64 * 1024 * 1024);
        // Long enough to outlast the restart below.
        let store: Arc<dyn ArtifactStore> = match backend {
            Backend::S3 => Arc::new(open_s3(fixture.moto.as_ref().unwrap(), fast_retry(8)).await),
            _ => Arc::new(open_gcs(fixture.gcs.as_ref().unwrap(), fast_retry(8)).await),
        };
        let upload = {
            let store = store.clone();
            let digest = digest.clone();
            tokio::spawn(async move { store.put(&digest, &path).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !upload.is_finished(),
            "{backend:?}: the upload ended before the server stopped"
        );
        match backend {
            Backend::S3 => fixture.moto.as_mut().unwrap().stop(),
            _ => fixture.gcs.as_mut().unwrap().stop(),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        match backend {
            Backend::S3 => fixture.moto.as_mut().unwrap().restart(),
            _ => fixture.gcs.as_mut().unwrap().restart(),
        }

        let stored = upload.await.unwrap();
        assert!(stored.is_ok(), "{backend:?}: {stored:?}");
        let (read_digest, size) = digest_of_blob(store.as_ref(), &digest).await;
        assert_eq!(size, 64 * 1024 * 1024, "{backend:?}");
        assert_eq!(read_digest, digest, "{backend:?}");
    }
}

/// A server that stays down: the upload fails with an error naming the
/// object after its retries, and keeps the source file for a later try.
#[tokio::test(flavor = "multi_thread")]
async fn upload_fails_when_server_stays_down() {
    for backend in [Backend::S3, Backend::Gcs] {
        let mut fixture = fixture(backend).await;
        let (path, digest) = stage_large(&fixture.staging, 32 * 1024 * 1024);
        match backend {
            Backend::S3 => fixture.moto.as_mut().unwrap().stop(),
            _ => fixture.gcs.as_mut().unwrap().stop(),
        }
        let error = fixture
            .store
            .put(&digest, &path)
            .await
            .unwrap_err()
            .to_string();
        let key = blob_key(&digest).unwrap();
        assert!(error.contains(&key), "{backend:?}: {error}");
        assert!(error.contains("tries"), "{backend:?}: {error}");
        assert!(
            path.exists(),
            "{backend:?}: a failed put must keep its source"
        );
    }
}

/// Writes `~/.studioml/config.yaml` of `studio` with an S3 store on moto;
/// the bucket name comes from an environment variable, as configs may.
fn use_s3_store(studio: &mut Studio, moto: &Moto, extra_storage_keys: &str) {
    for (name, value) in moto.client_env() {
        studio.env(name, &value);
    }
    studio.env("STUDIO_TEST_BUCKET", "studio-artifacts");
    std::fs::create_dir_all(studio.studio_home()).unwrap();
    std::fs::write(
        studio.studio_home().join("config.yaml"),
        format!(
            "storage:\n  type: s3\n  bucket: $STUDIO_TEST_BUCKET\n  endpoint: {}\n  region: us-east-1\n{extra_storage_keys}",
            moto.endpoint()
        ),
    )
    .unwrap();
}

/// Writes the config of `studio` with a GCS store on fake-gcs, which it
/// reaches through `STORAGE_EMULATOR_HOST`, as Google's own tools do.
fn use_gcs_store(studio: &mut Studio, gcs: &FakeGcs) {
    studio.env("STORAGE_EMULATOR_HOST", &gcs.endpoint());
    std::fs::create_dir_all(studio.studio_home()).unwrap();
    std::fs::write(
        studio.studio_home().join("config.yaml"),
        "storage:\n  type: gcs\n  bucket: studio-artifacts\n  project: test\n",
    )
    .unwrap();
}

/// Creates `bucket` on fake-gcs when missing and uploads `name` into it.
fn gcs_put_object(gcs: &FakeGcs, bucket: &str, name: &str, body: &str) {
    let address = format!("{}:80", gcs.endpoint().trim_start_matches("http://"));
    let json = [("Content-Type", "application/json")];
    let (status, answer) = studio_tests::http(
        &address,
        "POST",
        "/storage/v1/b?project=test",
        &json,
        &format!("{{\"name\": \"{bucket}\"}}"),
    );
    assert!(
        status == 200 || status == 409,
        "create bucket {bucket}: {status} {answer}"
    );
    let (status, answer) = studio_tests::http(
        &address,
        "POST",
        &format!("/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}"),
        &[("Content-Type", "text/csv")],
        body,
    );
    assert_eq!(status, 200, "upload {bucket}/{name}: {answer}");
}

/// Checks that `root` contains the two objects under `sets/` that the tests
/// upload: `x.csv` and `y.csv`, with their content.
fn assert_input_set(root: &Path) {
    let files = texts_under(root);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files[0].0.ends_with("x.csv"), "{files:?}");
    assert_eq!(files[0].1, "a,b\n1,2\n", "{files:?}");
    assert!(files[1].0.ends_with("y.csv"), "{files:?}");
    assert_eq!(files[1].1, "c\n3\n", "{files:?}");
}

/// Reads the files under `root` as (path relative to `root`, text), sorted.
fn texts_under(root: &Path) -> Vec<(String, String)> {
    let mut texts: Vec<(String, String)> = files_under(root)
        .into_iter()
        .map(|(path, bytes)| {
            (
                path.strip_prefix(root).unwrap().display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        })
        .collect();
    texts.sort();
    texts
}

/// Every file under `root`, read as bytes, with its path.
fn files_under(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                if let Ok(bytes) = std::fs::read(&path) {
                    files.push((path, bytes));
                }
            }
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// `studio run` with an S3 store: the weights that `train_linreg.py`
/// writes are stored in the bucket and come back through `studio artifacts
/// get`, an `s3://` object is captured once, and the AWS secret key shows
/// up in no output, API answer, record, event or log.
#[test]
fn studio_run_with_s3_store() {
    let moto = Moto::start();
    let mut studio = Studio::new();
    use_s3_store(&mut studio, &moto, "");
    let script = std::fs::read_to_string(
        studio_tests::repository().join("examples/general/train_linreg.py"),
    )
    .unwrap();
    studio.write("train_linreg.py", &script);

    let moto_address = moto.endpoint().trim_start_matches("http://").to_string();
    let (status, body) = studio_tests::http(&moto_address, "PUT", "/inputs", &[], "");
    assert_eq!(status, 200, "create the input bucket: {body}");
    let (status, body) = studio_tests::http(
        &moto_address,
        "PUT",
        "/inputs/sets/x.csv",
        &[],
        "a,b\n1,2\n",
    );
    assert_eq!(status, 200, "upload the input object: {body}");
    let (status, body) =
        studio_tests::http(&moto_address, "PUT", "/inputs/sets/y.csv", &[], "c\n3\n");
    assert_eq!(status, 200, "upload the input object: {body}");

    let run = studio.studio(&[
        "run",
        "--capture=~/.weights:weights",
        "--capture-once=s3://inputs/sets/x.csv:data",
        // A prefix that names no object: every object under `sets/`.
        "--capture-once=s3://inputs/sets:dataset",
        "train_linreg.py",
    ]);
    let mut outputs = vec![stdout(&run), stderr(&run)];
    let log =
        std::fs::read_to_string(studio.studio_home().join("logs/studiod.log")).unwrap_or_default();
    assert!(
        run.status.success(),
        "stdout: {}\nstderr: {}\ndaemon log: {log}",
        stdout(&run),
        stderr(&run)
    );

    let listing = studio.ok(&["runs", "list", "all", "--json"]);
    let experiments: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let key = experiments[0]["key"].as_str().unwrap().to_string();
    let record = studio.wait_for_status(&key, "finished");
    outputs.push(listing);
    outputs.push(record.to_string());

    let artifacts = studio.ok(&["artifacts", "list", &key, "--json"]);
    outputs.push(artifacts.clone());
    let artifacts: serde_json::Value = serde_json::from_str(&artifacts).unwrap();
    let digest_of = |tag: &str| {
        artifacts
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["tag"] == tag)
            .unwrap_or_else(|| panic!("no artifact {tag} in {artifacts}"))["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let weights_digest = digest_of("weights");
    let data_digest = digest_of("data");

    // The blobs are in the bucket, under the local store's layout.
    aws_test_environment();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stored = runtime.block_on(async {
        let config = s3_config(&moto, "studio-artifacts");
        S3Store::open_existing(&config)
            .await
            .unwrap()
            .list()
            .await
            .unwrap()
    });
    let stored: Vec<String> = stored.into_iter().map(|blob| blob.digest).collect();
    assert!(stored.contains(&weights_digest), "{stored:?}");
    assert!(stored.contains(&data_digest), "{stored:?}");
    assert!(
        !studio
            .studio_home()
            .join("artifacts/blobs")
            .read_dir()
            .is_ok_and(|mut entries| entries.next().is_some()),
        "blobs must not be kept in the local store"
    );

    let weights = studio.work().join("weights-out");
    outputs.push(studio.ok(&[
        "artifacts",
        "get",
        &key,
        "weights",
        weights.to_str().unwrap(),
    ]));
    let weight_files: Vec<PathBuf> = files_under(&weights)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert_eq!(
        weight_files
            .iter()
            .filter(|path| path.extension().is_some_and(|extension| extension == "pck"))
            .count(),
        10,
        "{weight_files:?}"
    );
    let dataset = studio.work().join("dataset-out");
    outputs.push(studio.ok(&[
        "artifacts",
        "get",
        &key,
        "dataset",
        dataset.to_str().unwrap(),
    ]));
    assert_input_set(&dataset);
    let data = studio.work().join("data-out");
    outputs.push(studio.ok(&["artifacts", "get", &key, "data", data.to_str().unwrap()]));
    let data_files = files_under(&data);
    assert!(
        data_files
            .iter()
            .any(|(path, bytes)| path.ends_with("x.csv") && bytes == b"a,b\n1,2\n"),
        "{data_files:?}"
    );

    let (status, answer) = studio_tests::http(
        &studio.http_address(),
        "GET",
        &format!("/api/v1/experiments/{key}"),
        &[],
        "",
    );
    assert_eq!(status, 200);
    outputs.push(answer);

    for output in &outputs {
        assert!(
            !output.contains(TEST_SECRET_KEY),
            "the secret key appears in: {output}"
        );
    }
    // The event log, records, experiment files and daemon logs.
    let files = files_under(&studio.studio_home());
    assert!(
        files.iter().any(|(path, _)| path.ends_with("studiod.log")),
        "no daemon log under {}",
        studio.studio_home().display()
    );
    // The supervisor's launch file, which contains the script's environment,
    // is gone once the supervisor has read it; so is every other copy.
    for (path, bytes) in files {
        assert!(
            !contains(&bytes, TEST_SECRET_KEY),
            "the secret key appears in {}",
            path.display()
        );
    }
}

/// `studio run` with a GCS store: a captured directory is stored in the
/// bucket and comes back through `studio artifacts get`, and a `gs://`
/// prefix is captured once with every object under it.
#[test]
fn studio_run_with_gcs_store() {
    let gcs = FakeGcs::start();
    let mut studio = Studio::new();
    use_gcs_store(&mut studio, &gcs);
    gcs_put_object(&gcs, "inputs", "sets/x.csv", "a,b\n1,2\n");
    gcs_put_object(&gcs, "inputs", "sets/y.csv", "c\n3\n");
    gcs_put_object(&gcs, "inputs", "other.csv", "not captured\n");
    studio.write(
        "train.py",
        "import os\nos.makedirs('model', exist_ok=True)\nopen('model/weights.txt', 'w').write('trained')\nprint('saved')\n",
    );

    let run = studio.studio(&[
        "run",
        "-e",
        "gcs-run",
        "--capture=model:model",
        "--capture-once=gs://inputs/sets/:dataset",
        "train.py",
    ]);
    let log =
        std::fs::read_to_string(studio.studio_home().join("logs/studiod.log")).unwrap_or_default();
    assert!(
        run.status.success(),
        "stdout: {}\nstderr: {}\ndaemon log: {log}",
        stdout(&run),
        stderr(&run)
    );
    assert!(stdout(&run).contains("saved"), "{}", stdout(&run));
    studio.wait_for_status("gcs-run", "finished");

    let artifacts = studio.ok(&["artifacts", "list", "gcs-run", "--json"]);
    let artifacts: serde_json::Value = serde_json::from_str(&artifacts).unwrap();
    let digests: Vec<String> = ["model", "dataset"]
        .iter()
        .map(|tag| {
            artifacts
                .as_array()
                .unwrap()
                .iter()
                .find(|entry| entry["tag"] == *tag)
                .unwrap_or_else(|| panic!("no artifact {tag} in {artifacts}"))["digest"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();

    // The blobs are in the bucket, and none in the local store.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stored = runtime.block_on(async {
        GcsStore::connect(
            &gcs_config("studio-artifacts"),
            gcs.endpoint(),
            studiod::artifacts::gcs::anonymous(),
        )
        .await
        .unwrap()
        .list()
        .await
        .unwrap()
    });
    let stored: Vec<String> = stored.into_iter().map(|blob| blob.digest).collect();
    for digest in &digests {
        assert!(stored.contains(digest), "{digest} not in {stored:?}");
    }
    assert!(
        !studio
            .studio_home()
            .join("artifacts/blobs")
            .read_dir()
            .is_ok_and(|mut entries| entries.next().is_some()),
        "blobs must not be kept in the local store"
    );

    let model = studio.work().join("model-out");
    studio.ok(&[
        "artifacts",
        "get",
        "gcs-run",
        "model",
        model.to_str().unwrap(),
    ]);
    let model_files = texts_under(&model);
    assert_eq!(model_files.len(), 1, "{model_files:?}");
    assert!(
        model_files[0].0.ends_with("weights.txt") && model_files[0].1 == "trained",
        "{model_files:?}"
    );
    let dataset = studio.work().join("dataset-out");
    studio.ok(&[
        "artifacts",
        "get",
        "gcs-run",
        "dataset",
        dataset.to_str().unwrap(),
    ]);
    assert_input_set(&dataset);
}

/// S3 goes down while an experiment runs: its final capture is retried,
/// the terminal shows the upload waiting, and the experiment ends failed
/// with the store's error instead of losing the artifact silently.
#[test]
fn s3_outage_fails_the_experiment() {
    let mut moto = Moto::start();
    let mut studio = Studio::new();
    use_s3_store(&mut studio, &moto, "  attempts: 3\n");
    // The script waits for `go`, then writes 24 MiB that do not compress,
    // so the final capture has a multipart upload to make.
    studio.write(
        "train.py",
        "import os, time\nwhile not os.path.exists('go'):\n    time.sleep(0.1)\nos.makedirs('model', exist_ok=True)\nopen('model/weights.bin', 'wb').write(os.urandom(24 << 20))\nprint('saved', flush=True)\n",
    );
    let run = studio
        .command("studio")
        .args(["run", "-e", "outage", "--capture=model:model", "train.py"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the start-up capture of the workspace is stored, so that
    // the outage hits the final capture only.
    studio_tests::wait_until("the workspace capture", || {
        let output = studio.studio(&["runs", "show", "outage", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&output.stdout)
            .is_ok_and(|record| record["artifacts"]["workspace"].is_object())
    });
    moto.stop();
    std::fs::write(studio.work().join("go"), "").unwrap();

    let output = run.wait_with_output().unwrap();
    let terminal = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{terminal}");
    assert!(terminal.contains("(uploading "), "{terminal}");
    assert!(
        terminal.contains("retrying: try 1 of 3 failed"),
        "{terminal}"
    );
    assert!(terminal.contains("artifacts not stored: "), "{terminal}");
    assert!(terminal.contains("model: "), "{terminal}");

    let record = studio.experiment("outage");
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["exit_code"], 0, "{record}");
    // The script's output is captured at the end too, and fails the same way.
    let errors: Vec<&str> = record["artifact_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error.as_str().unwrap())
        .collect();
    let model = errors
        .iter()
        .find(|error| error.starts_with("model: "))
        .unwrap_or_else(|| panic!("no error for the model artifact: {record}"));
    assert!(model.contains("s3://studio-artifacts/blobs/"), "{model}");
    assert!(model.contains("(after 3 tries)"), "{model}");
}

/// Writes an AWS profile `studio-test` with moto's test credentials into
/// the user's `~/.aws`, and a config whose store names `profile`. The test
/// process's own AWS variables are removed, so the profile is the only
/// source of credentials.
fn use_s3_profile(studio: &mut Studio, moto: &Moto, profile: &str) {
    let aws = studio.home().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[studio-test]\naws_access_key_id = {TEST_ACCESS_KEY}\naws_secret_access_key = {TEST_SECRET_KEY}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        "[profile studio-test]\nregion = us-east-1\n",
    )
    .unwrap();
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ] {
        studio.env_remove(name);
    }
    std::fs::create_dir_all(studio.studio_home()).unwrap();
    std::fs::write(
        studio.studio_home().join("config.yaml"),
        format!(
            "storage:\n  type: s3\n  bucket: profile-artifacts\n  endpoint: {}\n  profile: {profile}\n",
            moto.endpoint()
        ),
    )
    .unwrap();
}

/// `storage.profile` names the `~/.aws` profile whose credentials and
/// region the S3 store uses; a profile that does not exist is an error
/// that names it.
#[test]
fn s3_store_uses_the_named_profile() {
    let moto = Moto::start();
    let mut studio = Studio::new();
    use_s3_profile(&mut studio, &moto, "studio-test");
    studio.write(
        "train.py",
        "import os\nos.makedirs('model', exist_ok=True)\nopen('model/w.txt', 'w').write('1')\n",
    );
    let run = studio.studio(&["run", "-e", "profiled", "--capture=model:model", "train.py"]);
    let log =
        std::fs::read_to_string(studio.studio_home().join("logs/studiod.log")).unwrap_or_default();
    assert!(
        run.status.success(),
        "stderr: {}\ndaemon log: {log}",
        stderr(&run)
    );
    let model = studio.work().join("model-out");
    studio.ok(&[
        "artifacts",
        "get",
        "profiled",
        "model",
        model.to_str().unwrap(),
    ]);
    let model_files = texts_under(&model);
    assert!(
        model_files.len() == 1 && model_files[0].0.ends_with("w.txt") && model_files[0].1 == "1",
        "{model_files:?}"
    );
    studio.ok(&["daemon", "stop"]);

    let mut other = Studio::new();
    use_s3_profile(&mut other, &moto, "no-such-profile");
    other.write("train.py", "print('never runs')\n");
    let run = other.studio(&["run", "train.py"]);
    assert!(!run.status.success(), "{}", stdout(&run));
    assert!(!stdout(&run).contains("never runs"), "{}", stdout(&run));
    assert!(
        stderr(&run).contains("no AWS credentials for storage.profile 'no-such-profile'"),
        "the error must name the profile: {}",
        stderr(&run)
    );
    assert!(
        stderr(&run).contains("[profile no-such-profile] in ~/.aws/config"),
        "the error must say where to define it: {}",
        stderr(&run)
    );
}

/// A GCS store with no credentials anywhere stops studiod with an error
/// that names where credentials come from. The metadata server is pointed
/// at a closed loopback port, so the test reaches no real address.
#[test]
fn gcs_store_without_credentials_is_an_error() {
    let mut studio = Studio::new();
    for name in [
        "GOOGLE_APPLICATION_CREDENTIALS",
        "STORAGE_EMULATOR_HOST",
        "CLOUDSDK_CONFIG",
    ] {
        studio.env_remove(name);
    }
    let closed = format!("127.0.0.1:{}", studio_tests::services::free_port());
    studio.env("GCE_METADATA_HOST", &closed);
    std::fs::create_dir_all(studio.studio_home()).unwrap();
    std::fs::write(
        studio.studio_home().join("config.yaml"),
        format!("storage:\n  type: gcs\n  bucket: bucket-b\n  endpoint: http://{closed}\n"),
    )
    .unwrap();
    studio.write("train.py", "print('never runs')\n");

    let run = studio.studio(&["run", "train.py"]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(!stdout(&run).contains("never runs"), "{}", stdout(&run));
    let message = stderr(&run);
    assert!(!message.contains("panicked"), "{message}");
    assert!(
        message.contains("cannot get Google credentials"),
        "{message}"
    );
    assert!(
        message.contains("set GOOGLE_APPLICATION_CREDENTIALS"),
        "{message}"
    );
}
