//! HTTP routes of searches, and the TensorBoard scalars of an experiment.

use crate::api::ApiError;
use crate::daemon::Daemon;
use crate::server::Peer;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use std::sync::Arc;
use studio_core::api::SearchRequest;
use studio_core::hyperparam::MetricSpec;

/// `POST /api/v1/searches`: validates and starts a search.
pub async fn create_search(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Result<Json<SearchRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(request) = body.map_err(|rejection| {
        ApiError::bad_request(format!("invalid search request: {rejection}"))
    })?;
    let caller = crate::api::caller(&daemon, &peer);
    let info = daemon.start_search(request, caller).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// `GET /api/v1/searches/{id}`: progress and best experiment so far.
pub async fn show_search(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let state = daemon
        .searches
        .get(&id)
        .ok_or_else(|| super::search_not_found(&id))?;
    let metric = state
        .metric
        .as_deref()
        .and_then(|text| MetricSpec::parse(text).ok());
    Ok(Json(daemon.search_info(&state, metric.as_ref())))
}

/// `POST /api/v1/searches/{id}/stop`.
pub async fn stop_search(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = crate::api::caller(&daemon, &peer);
    Ok(Json(daemon.stop_search(&id, &caller).await?))
}

/// `GET /api/v1/experiments/{key}/scalars`: every TensorBoard scalar of the
/// experiment's `tb` directory as `{"tag": [[step, wall_time, value], ...]}`.
/// Corrupt files are logged and left out.
pub async fn experiment_scalars(
    State(daemon): State<Arc<Daemon>>,
    Path(key): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if daemon.experiment(&key).is_none() {
        return Err(ApiError::not_found(&key));
    }
    let directory = daemon.paths.experiment_dir(&key).join("tb");
    let (series, errors) =
        tokio::task::spawn_blocking(move || crate::tensorboard::read_scalars(&directory))
            .await
            .map_err(|error| ApiError::internal(error.to_string()))?;
    for error in errors {
        tracing::warn!(key, error, "cannot read a TensorBoard file");
    }
    Ok(Json(series))
}
