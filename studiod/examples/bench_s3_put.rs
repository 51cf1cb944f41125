//! Uploads one file to an S3 endpoint through Studio's S3 store and prints
//! the seconds it took, for `scripts/bench_cloudstore.py`.
//!
//! Usage: bench_s3_put ENDPOINT BUCKET FILE DIGEST
//! Credentials and region come from the AWS environment variables.

use std::path::PathBuf;
use studio_core::config::StorageConfig;
use studiod::artifacts::s3::S3Store;
use studiod::artifacts::store::ArtifactStore;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, bucket, file, digest] = arguments.as_slice() else {
        anyhow::bail!("usage: bench_s3_put ENDPOINT BUCKET FILE DIGEST");
    };
    let config = StorageConfig {
        kind: "s3".into(),
        bucket: Some(bucket.clone()),
        endpoint: Some(endpoint.clone()),
        ..StorageConfig::default()
    };
    let store = S3Store::open(&config).await?;
    // `put` takes the file over, so it uploads a hard link to it.
    let source = PathBuf::from(format!("{file}.studio-upload"));
    let _ = std::fs::remove_file(&source);
    std::fs::hard_link(file, &source)?;
    let started = std::time::Instant::now();
    let stored = store.put(digest, &source).await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        stored,
        "the blob was already in the bucket; reset the server first"
    );
    println!("{seconds:.3}");
    Ok(())
}
