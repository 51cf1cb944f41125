//! HTTP routes of artifacts:
//! - `GET /api/v1/experiments/{key}/artifacts`: the stored artifacts as a
//!   JSON list of `{tag, digest, size, files, mutable, time, file}`.
//! - `GET /api/v1/experiments/{key}/artifacts/{tag}`: the artifact's tar.gz,
//!   streamed from the store (`Content-Type: application/gzip`).
//! - `GET /api/v1/experiments/{key}/captures`: captures running now, for
//!   progress display.

use crate::api::ApiError;
use crate::daemon::Daemon;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use studio_core::api::ArtifactEntry;

/// Adds the artifact routes to the API router.
pub fn routes(router: Router<Arc<Daemon>>) -> Router<Arc<Daemon>> {
    router
        .route("/api/v1/experiments/{key}/artifacts", get(list_artifacts))
        .route(
            "/api/v1/experiments/{key}/artifacts/{tag}",
            get(download_artifact),
        )
        .route("/api/v1/experiments/{key}/captures", get(capture_progress))
}

async fn list_artifacts(
    State(daemon): State<Arc<Daemon>>,
    Path(key): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let experiment = daemon
        .experiment(&key)
        .ok_or_else(|| ApiError::not_found(&key))?;
    let entries: Vec<ArtifactEntry> = experiment
        .artifacts
        .into_iter()
        .map(|(tag, view)| ArtifactEntry { tag, view })
        .collect();
    Ok(Json(entries))
}

async fn download_artifact(
    State(daemon): State<Arc<Daemon>>,
    Path((key, tag)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let experiment = daemon
        .experiment(&key)
        .ok_or_else(|| ApiError::not_found(&key))?;
    let Some(view) = experiment.artifacts.get(&tag) else {
        let known: Vec<_> = experiment.artifacts.keys().cloned().collect();
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!(
                "experiment {key} has no stored artifact {tag:?}; it has: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    let reader = daemon
        .artifacts
        .store
        .get(&view.digest)
        .await
        .map_err(|error| {
            ApiError::internal(format!("cannot read artifact {key}/{tag}: {error}"))
        })?;
    let stream = futures_util::stream::unfold(reader, |mut reader| async move {
        use tokio::io::AsyncReadExt;
        let mut buffer = vec![0u8; 64 * 1024];
        match reader.read(&mut buffer).await {
            Ok(0) => None,
            Ok(count) => {
                buffer.truncate(count);
                Some((Ok(bytes::Bytes::from(buffer)), reader))
            }
            Err(error) => {
                tracing::error!(%error, "artifact download failed");
                Some((Err(error), reader))
            }
        }
    });
    let headers = [
        (header::CONTENT_TYPE, "application/gzip".to_string()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{key}-{tag}.tar.gz\""),
        ),
        (header::CONTENT_LENGTH, view.size.to_string()),
    ];
    Ok((headers, Body::from_stream(stream)).into_response())
}

async fn capture_progress(
    State(daemon): State<Arc<Daemon>>,
    Path(key): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if daemon.experiment(&key).is_none() {
        return Err(ApiError::not_found(&key));
    }
    Ok(Json(daemon.capture_progress(&key)))
}
