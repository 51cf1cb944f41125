//! Routes of the HTTP API under `/api/v1`, the same on the Unix socket and
//! on the HTTP port.

use crate::daemon::Daemon;
use crate::runner::Caller;
use crate::server::Peer;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use studio_core::api::{DaemonInfo, ErrorBody, ListQuery, RunRequest, Status, TagsRequest};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

mod openapi;
mod output_events;
mod scalars_chart;

/// An error response: a status code and a message that names the value and
/// the fix.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(key: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("experiment {key} not found: list experiments with `studio runs list all`"),
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %self.message, "request failed");
        }
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

pub fn router(daemon: Arc<Daemon>) -> Router {
    let router = crate::artifacts::http::routes(Router::new());
    router
        .route(
            "/api/v1/experiments",
            get(list_experiments).post(create_experiment),
        )
        .route(
            "/api/v1/experiments/{key}",
            get(show_experiment).delete(delete_experiment),
        )
        .route("/api/v1/experiments/{key}/stop", post(stop_experiment))
        .route("/api/v1/experiments/{key}/output", get(experiment_output))
        .route("/api/v1/experiments/{key}/tags", put(tag_experiment))
        .route("/api/v1/projects", get(list_projects))
        .route("/api/v1/users", get(list_users))
        .route("/api/v1/events", get(event_stream))
        .route("/api/v1/daemon", get(daemon_info))
        .route("/api/v1/daemon/shutdown", post(shutdown))
        .route(
            "/api/v1/experiments/{key}/scalars",
            get(crate::search::routes::experiment_scalars),
        )
        .route(
            "/api/v1/searches",
            post(crate::search::routes::create_search),
        )
        .route(
            "/api/v1/searches/{id}",
            get(crate::search::routes::show_search),
        )
        .route(
            "/api/v1/searches/{id}/stop",
            post(crate::search::routes::stop_search),
        )
        .route("/api/v1/openapi.json", get(openapi::document))
        .route(
            "/api/v1/experiments/{key}/scalars.svg",
            get(scalars_chart::chart),
        )
        .merge(crate::tensorboard_ui::routes())
        .fallback(unknown_route)
        .with_state(daemon)
}

/// Returns the caller of a request. On the Unix socket it is the user of
/// the peer credentials. The HTTP port cannot tell local users apart, so
/// its callers act as the daemon's user only when they send the dashboard
/// token, which only that user and root get from `studio ui`. Without the
/// token they may read but not change anything.
pub(crate) fn caller(daemon: &Daemon, peer: &Peer) -> Caller {
    match peer {
        Peer::Unix { uid, gid } => Caller::from_uid(*uid, Some(*gid)),
        Peer::Tcp(_) => Caller::anonymous(),
        Peer::TcpWithToken(_) => Caller::from_uid(daemon.uid, None),
    }
}

async fn create_experiment(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Result<Json<RunRequest>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let Json(request) = body
        .map_err(|rejection| ApiError::bad_request(format!("invalid run request: {rejection}")))?;
    let caller = caller(&daemon, &peer);
    let experiment = daemon.start_experiment(request, caller).await?;
    Ok((StatusCode::CREATED, Json(experiment)))
}

async fn list_experiments(
    State(daemon): State<Arc<Daemon>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(format!("invalid query: {}", rejection.body_text()))
    })?;
    let page = daemon
        .read_projection()
        .list(&query)
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    Ok(Json(page))
}

async fn show_experiment(
    State(daemon): State<Arc<Daemon>>,
    Path(key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    daemon
        .experiment(&key)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(&key))
}

async fn stop_experiment(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let caller = caller(&daemon, &peer);
    Ok(Json(daemon.stop_experiment(&key, &caller).await?))
}

async fn delete_experiment(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let caller = caller(&daemon, &peer);
    daemon.delete_experiment(&key, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tag_experiment(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(key): Path<String>,
    body: Result<Json<TagsRequest>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let Json(tags) = body.map_err(|rejection| {
        ApiError::bad_request(format!(
            "invalid tags: {rejection}; send a JSON object of name to value"
        ))
    })?;
    let caller = caller(&daemon, &peer);
    Ok(Json(daemon.tag_experiment(&key, tags, &caller).await?))
}

async fn list_projects(State(daemon): State<Arc<Daemon>>) -> impl IntoResponse {
    Json(daemon.read_projection().projects())
}

async fn list_users(State(daemon): State<Arc<Daemon>>) -> impl IntoResponse {
    Json(daemon.read_projection().users())
}

async fn daemon_info(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
) -> impl IntoResponse {
    let may_read_token = matches!(peer, Peer::Unix { uid, .. } if uid == daemon.uid || uid == 0);
    let projection = daemon.read_projection();
    Json(DaemonInfo {
        version: studio_core::VERSION.into(),
        pid: std::process::id(),
        host: daemon.host.clone(),
        host_id: format!("{:016x}", daemon.log.host_id()),
        user: Caller::from_uid(daemon.uid, None).name,
        home: daemon.paths.home.clone(),
        socket: daemon.paths.socket.clone(),
        http: daemon.http_address.get().cloned(),
        http_error: daemon.http_error.get().cloned(),
        started_at: daemon.started_at,
        experiments: projection.len(),
        running: projection.count_with_status(Status::Running),
        events: daemon.log.len(),
        dashboard_token: may_read_token.then(|| crate::server::dashboard_token().to_string()),
    })
}

async fn shutdown(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
) -> ApiResult<impl IntoResponse> {
    let caller = caller(&daemon, &peer);
    if caller.uid != 0 && caller.uid != daemon.uid {
        return Err(ApiError::forbidden(format!(
            "{} may not stop studiod: only its own user or root may; on the HTTP port, send the dashboard token that `studio ui` prints",
            caller.name
        )));
    }
    tracing::info!(by = caller.name, "shutdown requested through the API");
    daemon.shutdown.notify_one();
    Ok(StatusCode::ACCEPTED)
}

async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route {}: see /api/v1/openapi.json for the routes",
            uri.path()
        ),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OutputQuery {
    /// First byte to return.
    offset: u64,
    /// Maximum bytes to return; all when absent.
    length: Option<u64>,
    /// Keeps the response open and sends new output until the experiment ends.
    follow: bool,
}

/// Chunk size of output reads.
const OUTPUT_CHUNK: usize = 64 * 1024;

async fn experiment_output(
    State(daemon): State<Arc<Daemon>>,
    Path(key): Path<String>,
    headers: axum::http::HeaderMap,
    query: Result<Query<OutputQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(format!("invalid query: {}", rejection.body_text()))
    })?;
    if daemon.experiment(&key).is_none() {
        return Err(ApiError::not_found(&key));
    }
    if output_events::wants_events(&headers) {
        return Ok(output_events::response(daemon, key, query.offset, &headers));
    }
    let path = daemon.output_path(&key);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !query.follow => {
            return Ok((
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                Vec::new(),
            )
                .into_response());
        }
        Err(error) => {
            return Err(ApiError::internal(format!(
                "cannot open {}: {error}",
                path.display()
            )))
        }
    };
    let size = file
        .metadata()
        .await
        .map(|metadata| metadata.len())
        .unwrap_or(0);
    file.seek(std::io::SeekFrom::Start(query.offset.min(size)))
        .await
        .map_err(|error| ApiError::internal(error.to_string()))?;

    if !query.follow {
        let available = size.saturating_sub(query.offset);
        let wanted = query
            .length
            .map_or(available, |length| length.min(available));
        let mut buffer = Vec::with_capacity(wanted as usize);
        (&mut file)
            .take(wanted)
            .read_to_end(&mut buffer)
            .await
            .map_err(|error| ApiError::internal(error.to_string()))?;
        let headers = [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::HeaderName::from_static("x-output-size"),
                size.to_string(),
            ),
        ];
        return Ok((headers, buffer).into_response());
    }

    let stream = follow_output(daemon, key, file);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Streams the output file from its current position until the experiment
/// has ended and everything it wrote has been sent.
fn follow_output(
    daemon: Arc<Daemon>,
    key: String,
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    struct Follow {
        daemon: Arc<Daemon>,
        key: String,
        file: tokio::fs::File,
        events: tokio::sync::broadcast::Receiver<Arc<crate::events::Envelope>>,
        ended: bool,
    }
    let events = daemon.events.subscribe();
    let state = Follow {
        daemon,
        key,
        file,
        events,
        ended: false,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        let mut buffer = vec![0u8; OUTPUT_CHUNK];
        loop {
            match state.file.read(&mut buffer).await {
                Ok(0) => {}
                Ok(count) => {
                    buffer.truncate(count);
                    return Some((Ok(Bytes::from(buffer)), state));
                }
                Err(error) => return Some((Err(error), state)),
            }
            if state.ended {
                return None;
            }
            let finished = state
                .daemon
                .status(&state.key)
                .is_none_or(|status| status.is_final());
            if finished {
                // Read once more: the last bytes may have been written after
                // the read above and before the process ended.
                state.ended = true;
                continue;
            }
            let key = state.key.clone();
            let wait_for_event = async {
                loop {
                    match state.events.recv().await {
                        Ok(envelope) if envelope.key == key => return,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await
                        }
                    }
                }
            };
            tokio::select! {
                _ = wait_for_event => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    })
}

/// `GET /api/v1/events`: every new event as a Server-Sent Event whose data
/// is the envelope as JSON.
async fn event_stream(State(daemon): State<Arc<Daemon>>) -> impl IntoResponse {
    let receiver = daemon.events.subscribe();
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let event = match receiver.recv().await {
            Ok(envelope) => SseEvent::default()
                .id(envelope.id.to_string())
                .event(envelope.event.kind())
                .json_data(envelope.as_ref())
                .unwrap_or_else(|_| SseEvent::default().comment("unencodable event")),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(skipped)) => SseEvent::default()
                .event("lagged")
                .data(skipped.to_string()),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), receiver))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
