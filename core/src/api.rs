//! Requests and responses of the HTTP API (`/api/v1`), served by studiod on
//! its Unix socket and on its HTTP port alike.

use crate::config::Resources;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

pub const API_PREFIX: &str = "/api/v1";

/// Stage of an experiment's life. `Finished`, `Failed`, `Stopped` and
/// `Interrupted` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Waiting,
    Queued,
    Running,
    /// The script exited with code 0.
    Finished,
    /// The script exited with another code, was killed by a signal it was
    /// not sent by Studio, or could not be started.
    Failed,
    /// Studio stopped it: `studio runs stop`, Ctrl-C or `--max-duration`.
    Stopped,
    /// Its process is gone and no exit status was recorded, for example
    /// after the host rebooted.
    Interrupted,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Waiting,
        Status::Queued,
        Status::Running,
        Status::Finished,
        Status::Failed,
        Status::Stopped,
        Status::Interrupted,
    ];

    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Finished | Status::Failed | Status::Stopped | Status::Interrupted
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Failed => "failed",
            Status::Stopped => "stopped",
            Status::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| {
                let known: Vec<_> = Status::ALL.iter().map(|status| status.as_str()).collect();
                format!("unknown status {text:?}; use one of {}", known.join(", "))
            })
    }
}

/// `POST /api/v1/experiments`: create an experiment and start it now.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunRequest {
    /// Key to use; the daemon generates one when absent.
    pub experiment: Option<String>,
    pub project: Option<String>,
    /// `train.py`, a path relative to `cwd`, or `package::module`.
    pub script: String,
    /// Arguments for the script, exactly as typed.
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// Interpreter that runs the script.
    pub python: PathBuf,
    /// The client's environment. The experiment inherits it, but it is never
    /// stored in the event log because it may contain secrets.
    pub env: BTreeMap<String, String>,
    /// The config's `env:` section, already substituted; wins over `env`.
    pub config_env: BTreeMap<String, String>,
    pub resources: Resources,
    /// Seconds after which the experiment is stopped.
    pub max_duration: Option<f64>,
    /// Seconds the experiment may wait before it starts; 0 or less means it
    /// has expired and will not run.
    pub lifetime: Option<f64>,
    /// `name`, `name:min` or `name:max`.
    pub metric: Option<String>,
    /// Seconds between SIGTERM and SIGKILL on stop.
    pub stop_grace: Option<f64>,
    /// Artifacts asked for with `--capture-once`, `--capture` and `--reuse`;
    /// paths are absolute (the client expands `~` and relative paths).
    pub artifacts: Vec<ArtifactRequest>,
    /// `local` puts the experiment on studiod's local queue, which starts
    /// it when a worker slot is free; absent means start it now.
    pub queue: Option<String>,
    /// Experiments of the local queue that run at once for this request;
    /// default one per free GPU, else one.
    pub num_workers: Option<u32>,
    /// Hyperparameter values of this experiment, recorded on it.
    pub hyperparameters: BTreeMap<String, String>,
    /// Files to add to the experiment's artifact mapping without storing
    /// them, such as the `.npy` arrays of an optimizer's parameters.
    pub extra_artifacts: BTreeMap<String, PathBuf>,
}

/// One artifact flag of `studio run`, parsed by the client and checked
/// again by the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ArtifactRequest {
    /// `--capture-once PATH:TAG`: stored once at start, immutable.
    CaptureOnce { tag: String, path: PathBuf },
    /// `--capture-once URL:TAG`: downloaded once into the blob cache.
    Download { tag: String, url: String },
    /// `--capture PATH:TAG`: the user's own path, stored periodically and
    /// at the end.
    Capture { tag: String, path: PathBuf },
    /// `--reuse KEY/TAG:NEWTAG`: another experiment's stored artifact, read
    /// only.
    Reuse {
        tag: String,
        experiment: String,
        source_tag: String,
    },
}

impl ArtifactRequest {
    /// Tag under which the script finds the artifact.
    pub fn tag(&self) -> &str {
        match self {
            ArtifactRequest::CaptureOnce { tag, .. }
            | ArtifactRequest::Download { tag, .. }
            | ArtifactRequest::Capture { tag, .. }
            | ArtifactRequest::Reuse { tag, .. } => tag,
        }
    }
}

/// The last stored version of one artifact of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactView {
    /// SHA-256 of the packed tar.gz, in hex.
    pub digest: String,
    /// Bytes of the packed tar.gz.
    pub size: u64,
    /// Regular files inside.
    pub files: u64,
    /// True for artifacts captured again while the experiment runs.
    pub mutable: bool,
    /// Seconds since the Unix epoch when this version was stored.
    pub time: f64,
    /// Name of the file when the artifact is one file, not a directory.
    #[serde(default)]
    pub file: Option<String>,
}

/// One entry of `GET /api/v1/experiments/{key}/artifacts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactEntry {
    pub tag: String,
    #[serde(flatten)]
    pub view: ArtifactView,
}

/// Response of `GET /api/v1/experiments/{key}/captures`: the captures that
/// run now, so a client can show progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptureProgress {
    /// True once the script has ended and the final capture runs.
    pub final_capture: bool,
    pub running: Vec<CaptureState>,
}

/// One capture in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptureState {
    pub tag: String,
    /// Bytes of files read so far.
    pub bytes_read: u64,
    /// Bytes of all files to read; 0 until the files have been listed.
    pub bytes_total: u64,
    /// Bytes of the packed blob sent to the artifact store so far.
    #[serde(default)]
    pub bytes_sent: u64,
    /// Size of the packed blob; 0 while packing, so a non-zero value means
    /// that the upload runs.
    #[serde(default)]
    pub bytes_to_send: u64,
    /// The last failed try of the upload while it waits for the next one.
    #[serde(default)]
    pub retrying: Option<String>,
}

impl fmt::Debug for RunRequest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RunRequest")
            .field("experiment", &self.experiment)
            .field("project", &self.project)
            .field("script", &self.script)
            .field("args", &self.args)
            .field("cwd", &self.cwd)
            .field("python", &self.python)
            .field(
                "env",
                &format_args!("<{} variables hidden>", self.env.len()),
            )
            .field(
                "config_env",
                &format_args!("<{} variables hidden>", self.config_env.len()),
            )
            .field("resources", &self.resources)
            .field("max_duration", &self.max_duration)
            .field("lifetime", &self.lifetime)
            .field("metric", &self.metric)
            .field("queue", &self.queue)
            .field("num_workers", &self.num_workers)
            .field("hyperparameters", &self.hyperparameters)
            .field("artifacts", &self.artifacts)
            .finish()
    }
}

/// Git state of the experiment's directory when it started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitInfo {
    /// URL of the `origin` remote with any user name and password removed.
    pub url: Option<String>,
    pub commit: String,
    pub branch: Option<String>,
    /// True when tracked files had uncommitted changes.
    pub dirty: bool,
}

/// An experiment as the projections hold it and the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub key: String,
    pub project: Option<String>,
    /// User name of the submitter, taken from the socket's peer credentials.
    pub owner: String,
    pub owner_uid: Option<u32>,
    pub script: String,
    /// True when `script` names a module run with `python -m`.
    #[serde(default)]
    pub module: bool,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub python: PathBuf,
    #[serde(default)]
    pub python_version: Option<String>,
    #[serde(default)]
    pub pip_freeze: Vec<String>,
    #[serde(default)]
    pub git: Option<GitInfo>,
    #[serde(default)]
    pub resources: Resources,
    pub status: Status,
    /// Seconds since the Unix epoch.
    pub time_added: f64,
    #[serde(default)]
    pub time_started: Option<f64>,
    #[serde(default)]
    pub time_finished: Option<f64>,
    pub host: String,
    #[serde(default)]
    pub pid: Option<u32>,
    /// Start time of `pid` in clock ticks since boot, so a reused pid is not
    /// mistaken for the experiment.
    #[serde(default)]
    pub pid_start_time: Option<u64>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    /// Reason, in words, that the experiment stopped, failed or was interrupted.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub metric_value: Option<f64>,
    #[serde(default)]
    pub max_duration: Option<f64>,
    #[serde(default)]
    pub lifetime: Option<f64>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// User who asked for the stop.
    #[serde(default)]
    pub stopped_by: Option<String>,
    /// Artifacts that could not be stored, each as `tag: error`.
    #[serde(default)]
    pub artifact_errors: Vec<String>,
    /// Last stored version of each artifact, by tag.
    #[serde(default)]
    pub artifacts: BTreeMap<String, ArtifactView>,
    /// Values of the hyperparameters searched, by name, as substituted.
    #[serde(default)]
    pub hyperparameters: BTreeMap<String, String>,
}

impl Experiment {
    /// Seconds from start to finish, or to `now` while running.
    pub fn duration(&self, now: f64) -> Option<f64> {
        let started = self.time_started?;
        Some(self.time_finished.unwrap_or(now) - started)
    }

    /// Returns the command line as the user would type it without Studio.
    pub fn command_line(&self) -> String {
        let interpreter = self
            .python
            .file_name()
            .map_or("python".into(), |name| name.to_string_lossy().into_owned());
        let mut parts = vec![interpreter];
        if self.module {
            parts.push("-m".into());
            parts.push(self.script.replace("::", "."));
        } else {
            parts.push(self.script.clone());
        }
        parts.extend(self.args.iter().cloned());
        parts.join(" ")
    }
}

/// Query of `GET /api/v1/experiments`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    pub project: Option<String>,
    pub owner: Option<String>,
    pub status: Option<Status>,
    /// Text that the key, project, script or arguments must contain.
    pub q: Option<String>,
    /// `time` (newest first, the default), `-time` (oldest first) or
    /// `metric` (best first).
    pub sort: Option<String>,
    /// Opaque position returned as `next_cursor` by the previous page.
    pub cursor: Option<String>,
    /// Page size; the default is 100 and the maximum 10,000.
    pub limit: Option<usize>,
    /// Comma-separated field names to return; all when absent.
    pub fields: Option<String>,
}

/// Response of `GET /api/v1/experiments`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResponse {
    /// Experiment objects, with only the requested fields when `fields` was
    /// given.
    pub experiments: Vec<serde_json::Value>,
    /// Number of experiments that match the filters, on all pages.
    pub total: usize,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectSummary {
    pub name: String,
    pub experiments: usize,
    pub running: usize,
    pub last_added: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserSummary {
    pub name: String,
    pub experiments: usize,
    pub running: usize,
}

/// Response of `GET /api/v1/daemon`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub version: String,
    pub pid: u32,
    pub host: String,
    /// Identifier of this host in event ids, as 16 hex digits.
    pub host_id: String,
    /// User that studiod runs as, whom requests on the HTTP port act for.
    #[serde(default)]
    pub user: String,
    pub home: PathBuf,
    pub socket: PathBuf,
    /// Address of the HTTP port, when it is open.
    pub http: Option<String>,
    /// Reason that the HTTP port is closed although it was configured.
    #[serde(default)]
    pub http_error: Option<String>,
    pub started_at: f64,
    pub experiments: usize,
    pub running: usize,
    pub events: u64,
    /// Token that lets the dashboard act as studiod's user on the HTTP
    /// port; sent only to that user (and root) on the Unix socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_token: Option<String>,
}

/// Body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// `PUT /api/v1/experiments/{key}/tags`: tags to set; an empty value
/// removes the tag.
pub type TagsRequest = BTreeMap<String, String>;

/// `POST /api/v1/searches`: a hyperparameter search, run as experiments of
/// one project on the local queue.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchRequest {
    /// Template of every experiment; `experiment` is the prefix of their
    /// keys and `queue` is ignored.
    pub run: RunRequest,
    /// `NAME=SPEC` as given to `--hyperparam`.
    pub hyperparams: Vec<String>,
    /// `grid` (the default), `random`, `random:TRIALS`, `cmaes`, or the path
    /// of a Python file that defines an `Optimizer` class.
    pub optimizer: Option<String>,
    /// The config's `optimizer:` section.
    pub optimizer_config: serde_json::Value,
}

/// The best experiment of a search so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchBest {
    pub key: String,
    /// The metric's value, or the fitness when the search has no metric.
    pub value: f64,
    pub hyperparameters: BTreeMap<String, String>,
}

/// Answer of `POST /api/v1/searches` and `GET /api/v1/searches/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchInfo {
    pub id: String,
    pub project: String,
    pub optimizer: String,
    /// Keys of the experiments created so far, in order.
    pub experiments: Vec<String>,
    /// Number of experiments the search will run, when known in advance
    /// (grid and random); optimizers that adapt may stop earlier.
    pub total: Option<usize>,
    /// Experiments that have ended, whatever their status.
    pub ended: usize,
    pub failed: usize,
    pub workers: usize,
    pub metric: Option<String>,
    pub best: Option<SearchBest>,
    /// True when every experiment has ended and no more will be created.
    pub done: bool,
    pub stopped: bool,
    /// Why the search ended early, such as a plugin optimizer that failed.
    pub error: Option<String>,
}

/// Removes `user:password@` from a URL so it can be recorded.
pub fn strip_credentials(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find('/')
        .map_or(url.len(), |offset| authority_start + offset);
    match url[authority_start..authority_end].rfind('@') {
        Some(at) => format!(
            "{}{}",
            &url[..authority_start],
            &url[authority_start + at + 1..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_as_text() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>().unwrap(), status);
        }
        assert!("done".parse::<Status>().unwrap_err().contains("finished"));
    }

    #[test]
    fn credentials_are_stripped() {
        let cases = [
            (
                "https://ada:secret@github.com/ada/x.git",
                "https://github.com/ada/x.git",
            ),
            (
                "https://token@github.com/ada/x.git",
                "https://github.com/ada/x.git",
            ),
            (
                "https://github.com/ada/x.git",
                "https://github.com/ada/x.git",
            ),
            ("git@github.com:ada/x.git", "git@github.com:ada/x.git"),
            ("ssh://git@host/x@y", "ssh://host/x@y"),
        ];
        for (input, expected) in cases {
            assert_eq!(strip_credentials(input), expected, "{input}");
        }
    }

    #[test]
    fn run_request_debug_hides_environment() {
        let mut request = RunRequest::default();
        request
            .env
            .insert("AWS_SECRET_ACCESS_KEY".into(), "hunter2".into());
        let text = format!("{request:?}");
        assert!(!text.contains("hunter2"));
        assert!(!text.contains("AWS_SECRET_ACCESS_KEY"));
    }
}
