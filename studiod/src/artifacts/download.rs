//! `--capture-once URL:TAG`: files downloaded once into the blob cache.

use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Downloads `url` into `<cache>/<sha256 of the URL>/<file name>` unless it
/// is there already, and returns the file's path. A URL is never fetched
/// again: clear the cache directory to pick up new content.
pub async fn download(url: &str, cache: &Path) -> Result<PathBuf, String> {
    let directory = cache.join(super::store::hex(&Sha256::digest(url.as_bytes())));
    let name = file_name(url);
    let target = directory.join(&name);
    if tokio::fs::try_exists(&target).await.unwrap_or(false) {
        tracing::debug!(url, path = %target.display(), "download found in the blob cache");
        return Ok(target);
    }
    tokio::fs::create_dir_all(&directory)
        .await
        .map_err(|error| format!("cannot create {}: {error}", directory.display()))?;

    let mut response = reqwest::get(url).await.map_err(|error| error.to_string())?;
    if !response.status().is_success() {
        return Err(format!("the server answered {}", response.status()));
    }
    let temporary = directory.join(format!(".{name}.{}", uuid::Uuid::new_v4().simple()));
    let result = async {
        let mut file = tokio::fs::File::create(&temporary).await?;
        while let Some(chunk) = response.chunk().await.map_err(std::io::Error::other)? {
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.sync_all().await?;
        tokio::fs::rename(&temporary, &target).await
    }
    .await;
    if let Err(error) = result {
        let _ = tokio::fs::remove_file(&temporary).await;
        return Err(error.to_string());
    }
    tracing::info!(url, path = %target.display(), "downloaded an artifact");
    Ok(target)
}

/// Last path segment of the URL without its query, or `download`.
fn file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let after_scheme = path.split_once("://").map_or(path, |(_, rest)| rest);
    let name = after_scheme
        .split_once('/')
        .map(|(_, rest)| rest.rsplit('/').next().unwrap_or(""))
        .unwrap_or("");
    let valid = !name.is_empty() && name != "." && name != "..";
    if valid {
        name.to_string()
    } else {
        "download".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_come_from_the_path() {
        let cases = [
            ("http://127.0.0.1:8000/data/x.csv", "x.csv"),
            ("https://host/a/b.tar.gz?token=1", "b.tar.gz"),
            ("https://host", "download"),
            ("https://host/dir/", "download"),
            ("https://host/..", "download"),
        ];
        for (url, expected) in cases {
            assert_eq!(file_name(url), expected, "{url}");
        }
    }
}
