//! TensorBoard for the dashboard: `GET /api/v1/tensorboard` reports whether
//! `tensorboard` is installed, and `POST /api/v1/tensorboard` starts it on a
//! free loopback port for one experiment's `tb` directory or for all of a
//! project's, and returns its address. One TensorBoard runs per experiment
//! or project; asking again returns the running one.

use crate::api::ApiError;
use crate::daemon::Daemon;
use crate::runner::Caller;
use crate::server::Peer;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

/// Install command that the dashboard shows when TensorBoard is missing.
const INSTALL_HINT: &str = "pip install tensorboard";

pub fn routes() -> Router<Arc<Daemon>> {
    Router::new().route("/api/v1/tensorboard", get(availability).post(start))
}

#[derive(Debug, Serialize)]
struct Availability {
    installed: bool,
    /// Command that installs TensorBoard, shown when it is missing.
    install: &'static str,
}

/// Body of `POST /api/v1/tensorboard`: exactly one of the two.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct StartRequest {
    experiment: Option<String>,
    project: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Started {
    url: String,
    pid: u32,
}

struct Instance {
    child: Child,
    started: Started,
}

/// Running TensorBoards by target (`experiment:KEY` or `project:NAME`).
fn instances() -> &'static Mutex<HashMap<String, Instance>> {
    static INSTANCES: OnceLock<Mutex<HashMap<String, Instance>>> = OnceLock::new();
    INSTANCES.get_or_init(Default::default)
}

async fn availability() -> Json<Availability> {
    Json(Availability {
        installed: which::which("tensorboard").is_ok(),
        install: INSTALL_HINT,
    })
}

async fn start(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Result<Json<StartRequest>, JsonRejection>,
) -> Result<Json<Started>, ApiError> {
    // Starting a process as studiod's user is a change, which anonymous
    // callers (the HTTP port of a root studiod, without the token) may
    // not make.
    let caller = crate::api::caller(&daemon, &peer);
    if caller.uid == Caller::ANONYMOUS_UID {
        return Err(ApiError::forbidden(
            "anonymous callers may not start TensorBoard: open the address that `studio ui` prints",
        ));
    }
    let Json(request) = body.map_err(|rejection| {
        ApiError::bad_request(format!(
            "invalid TensorBoard request: {rejection}; send {{\"experiment\": KEY}} or {{\"project\": NAME}}"
        ))
    })?;
    let program = which::which("tensorboard").map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("tensorboard is not installed on studiod's PATH: install it with `{INSTALL_HINT}` and restart studiod"),
        )
    })?;
    let (target, logdir_args) =
        match (&request.experiment, &request.project) {
            (Some(key), None) => {
                if daemon.experiment(key).is_none() {
                    return Err(ApiError::not_found(key));
                }
                let logdir = tb_dir(&daemon, key);
                (
                    format!("experiment:{key}"),
                    vec!["--logdir".to_string(), logdir.display().to_string()],
                )
            }
            (None, Some(project)) => {
                let spec = project_logdir_spec(&daemon, project)?;
                (
                    format!("project:{project}"),
                    vec!["--logdir_spec".to_string(), spec],
                )
            }
            _ => return Err(ApiError::bad_request(
                "send exactly one of experiment and project, for example {\"experiment\": \"KEY\"}",
            )),
        };
    let mut running = instances()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(instance) = running.get_mut(&target) {
        if matches!(instance.child.try_wait(), Ok(None)) {
            return Ok(Json(instance.started.clone()));
        }
        running.remove(&target);
    }
    let port = free_port()?;
    let child = Command::new(&program)
        .args(&logdir_args)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| {
            tracing::error!(%target, %error, "cannot start tensorboard");
            ApiError::internal(format!("cannot start {}: {error}", program.display()))
        })?;
    let started = Started {
        url: format!("http://127.0.0.1:{port}/"),
        pid: child.id(),
    };
    tracing::info!(%target, pid = started.pid, url = %started.url, "started tensorboard");
    running.insert(
        target,
        Instance {
            child,
            started: started.clone(),
        },
    );
    Ok(Json(started))
}

/// Stops every TensorBoard that this daemon started; called on shutdown.
pub fn stop_all() {
    let mut running = instances()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (target, mut instance) in running.drain() {
        if let Err(error) = instance.child.kill() {
            tracing::warn!(%target, %error, "cannot stop tensorboard");
        }
        let _ = instance.child.wait();
        tracing::info!(%target, "stopped tensorboard");
    }
}

fn tb_dir(daemon: &Daemon, key: &str) -> PathBuf {
    daemon.paths.experiment_dir(key).join("tb")
}

/// `name:dir,...` over the project's experiments whose `tb` directory
/// exists. Keys contain no `:` or `,` (see `runner::validate_key`).
fn project_logdir_spec(daemon: &Daemon, project: &str) -> Result<String, ApiError> {
    let keys = project_keys(daemon, project)?;
    if keys.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("project {project:?} has no experiments: list projects with `studio runs list projects`"),
        ));
    }
    let parts: Vec<String> = keys
        .iter()
        .map(|key| (key, tb_dir(daemon, key)))
        .filter(|(_, dir)| dir.is_dir())
        .map(|(key, dir)| format!("{key}:{}", dir.display()))
        .collect();
    if parts.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("no experiment of project {project:?} has a tb directory: write TensorBoard logs to fs_tracker.get_tensorboard_dir()"),
        ));
    }
    Ok(parts.join(","))
}

fn project_keys(daemon: &Daemon, project: &str) -> Result<Vec<String>, ApiError> {
    let mut query = studio_core::api::ListQuery {
        project: Some(project.to_string()),
        limit: Some(crate::projection::MAX_PAGE),
        fields: Some("key".into()),
        ..Default::default()
    };
    let mut keys = Vec::new();
    loop {
        let page = daemon
            .read_projection()
            .list(&query)
            .map_err(|error| ApiError::internal(error.to_string()))?;
        keys.extend(
            page.experiments
                .iter()
                .filter_map(|experiment| experiment["key"].as_str().map(String::from)),
        );
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return Ok(keys),
        }
    }
}

/// Asks the kernel for a free loopback port. Another process may take it
/// before TensorBoard binds it; the user then retries.
fn free_port() -> Result<u16, ApiError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| ApiError::internal(format!("cannot find a free loopback port: {error}")))
}
