//! Hyperparameter searches: a batch of experiments of one project, each in
//! its own workspace with the values substituted, run through the local
//! queue. An optimizer proposes the values; adaptive ones (CMA-ES, plugins)
//! get each generation's fitness before they propose the next.

pub mod cmaes;
mod driver;
pub mod optimizer;
mod plan;
pub mod plugin;
pub mod routes;
pub mod workspace;

use crate::api::ApiError;
use crate::daemon::Daemon;
use crate::queue::{worker_slots, Slots};
use crate::runner::{validate_key, validate_request, Caller};
use optimizer::OptimizerSettings;
use plan::plan_optimizer;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use studio_core::api::{ArtifactRequest, SearchBest, SearchInfo, SearchRequest, Status};
use studio_core::hyperparam::MetricSpec;

/// How long the end of a search waits for the last metric read of an
/// experiment after it ended.
const METRIC_GRACE: Duration = Duration::from_secs(10);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The searches of this daemon (since it started) and the experiments
/// whose metric reader has finished.
///
/// NOTE: searches live in memory only. After a restart their queued
/// experiments still run, but an adaptive optimizer's later generations are
/// never created and `GET /api/v1/searches/{id}` no longer finds them.
#[derive(Default)]
pub struct Searches {
    searches: Mutex<HashMap<String, Arc<SearchState>>>,
    metrics_done: Mutex<HashSet<String>>,
}

impl Searches {
    /// Records that the experiment's last metric value has been read.
    pub fn metrics_done(&self, key: &str) {
        lock(&self.metrics_done).insert(key.to_string());
    }

    fn is_metrics_done(&self, key: &str) -> bool {
        lock(&self.metrics_done).contains(key)
    }

    pub fn get(&self, id: &str) -> Option<Arc<SearchState>> {
        lock(&self.searches).get(id).cloned()
    }
}

/// One search while it runs and after it ended.
pub struct SearchState {
    pub id: String,
    pub project: String,
    pub optimizer: String,
    pub metric: Option<String>,
    pub total: Option<usize>,
    pub slots: Slots,
    key_prefix: String,
    directory: PathBuf,
    keys: Mutex<Vec<String>>,
    fitness: Mutex<BTreeMap<String, f64>>,
    next_index: AtomicUsize,
    done: AtomicBool,
    stopped: AtomicBool,
    error: Mutex<Option<String>>,
}

impl SearchState {
    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn fail(&self, error: String) {
        tracing::error!(search = self.id, %error, "search failed");
        lock(&self.error).get_or_insert(error);
    }
}

impl Daemon {
    /// Validates a search, copies the workspace once and starts the search
    /// in the background. The returned info lists no experiments yet.
    pub async fn start_search(
        self: &Arc<Self>,
        request: SearchRequest,
        caller: Caller,
    ) -> Result<SearchInfo, ApiError> {
        if caller.uid == Caller::ANONYMOUS_UID {
            return Err(ApiError::forbidden(
                "this studiod is shared by the users of its host and cannot tell who sent an HTTP request: start searches with `studio run` on the host",
            ));
        }
        let mut template = request.run;
        if template.script.contains("::") {
            return Err(ApiError::bad_request(format!(
                "a search substitutes values into a script file, not a module: pass the .py file instead of {}",
                template.script
            )));
        }
        validate_request(&template, false)?;
        self.check_artifact_requests(&template, &caller)?;
        let script = relative_script(&template.cwd, &template.script)?;
        if request.hyperparams.is_empty() {
            return Err(ApiError::bad_request(
                "a search needs at least one --hyperparam NAME=SPEC",
            ));
        }
        let metric = template
            .metric
            .as_deref()
            .map(MetricSpec::parse)
            .transpose()
            .map_err(ApiError::bad_request)?;
        let settings = OptimizerSettings::from_config(&request.optimizer_config)
            .map_err(ApiError::bad_request)?;
        let optimizer_name = request.optimizer.clone().unwrap_or_else(|| "grid".into());
        let script_text = std::fs::read_to_string(template.cwd.join(&script)).map_err(|error| {
            ApiError::bad_request(format!("cannot read the script {script}: {error}"))
        })?;
        let plan = plan_optimizer(
            &optimizer_name,
            &request.hyperparams,
            &settings,
            &template.cwd,
            &request.optimizer_config,
        )?;
        for name in plan.scalar_names() {
            if !mentions(&script_text, &name) {
                return Err(ApiError::bad_request(format!(
                    "hyperparameter {name} does not appear in {script}: check the name, it must match a variable of the script"
                )));
            }
        }
        if let Some(prefix) = &template.experiment {
            validate_key(&format!("{prefix}_0000"))?;
        }
        let slots = worker_slots(template.num_workers).await?;

        let id = format!("hp_{}", crate::runner::generate_key());
        let project = template.project.clone().unwrap_or_else(|| {
            let stem = Path::new(&script).file_stem().map_or_else(
                || "script".into(),
                |stem| stem.to_string_lossy().into_owned(),
            );
            format!("hyperparam_{stem}")
        });
        template.project = Some(project.clone());
        template.queue = None;
        template.script = script.clone();
        // The packed workspace of each experiment would differ from the
        // others only by the script, so storing it would cost one full copy
        // per experiment. Each keeps its workspace of hard links instead,
        // where `fs_tracker.get_artifact("workspace")` finds it.
        let workspace_flag = template
            .artifacts
            .iter()
            .any(|artifact| artifact.tag() == "workspace");
        if !workspace_flag {
            template.artifacts.push(ArtifactRequest::CaptureOnce {
                tag: "workspace".into(),
                path: PathBuf::from("null"),
            });
        }

        let directory = self.paths.home.join("searches").join(&id);
        let base = directory.join("base");
        let source = template.cwd.clone();
        let skip = self.paths.home.clone();
        let copy_target = base.clone();
        let copied =
            tokio::task::spawn_blocking(move || workspace::copy_tree(&source, &copy_target, &skip))
                .await
                .map_err(|error| ApiError::internal(error.to_string()))?
                .map_err(|error| {
                    ApiError::internal(format!(
                        "cannot copy the workspace {} to {}: {error}",
                        template.cwd.display(),
                        base.display()
                    ))
                })?;
        tracing::info!(search = id, bytes = copied, base = %base.display(), "workspace copied for the search");

        let optimizer = match plan.build(&settings, &directory, &template) {
            Ok(optimizer) => optimizer,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&directory);
                return Err(ApiError::bad_request(error));
            }
        };
        let state = Arc::new(SearchState {
            id: id.clone(),
            project,
            optimizer: optimizer_name,
            metric: template.metric.clone(),
            total: plan.total(),
            slots,
            key_prefix: template.experiment.clone().unwrap_or_else(|| id.clone()),
            directory,
            keys: Mutex::new(Vec::new()),
            fitness: Mutex::new(BTreeMap::new()),
            next_index: AtomicUsize::new(0),
            done: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            error: Mutex::new(None),
        });
        lock(&self.searches.searches).insert(id.clone(), state.clone());
        tracing::info!(
            search = id,
            optimizer = state.optimizer,
            total = ?state.total,
            workers = state.slots.limit,
            owner = caller.name,
            "search started"
        );
        let info = self.search_info(&state, metric.as_ref());
        tokio::spawn(
            self.clone()
                .drive(state, optimizer, template, caller, settings),
        );
        Ok(info)
    }

    /// Current state of a search, with its best experiment so far.
    pub fn search_info(&self, state: &SearchState, metric: Option<&MetricSpec>) -> SearchInfo {
        let keys = lock(&state.keys).clone();
        let projection = self.read_projection();
        let mut ended = 0;
        let mut failed = 0;
        let mut best: Option<SearchBest> = None;
        let fitness = lock(&state.fitness).clone();
        for key in &keys {
            let Some(experiment) = projection.get(key) else {
                continue;
            };
            if experiment.status.is_final() {
                ended += 1;
            }
            if matches!(experiment.status, Status::Failed | Status::Interrupted) {
                failed += 1;
            }
            let value = match metric {
                Some(_) => experiment.metric_value,
                None => fitness.get(key).copied(),
            };
            let Some(value) = value else {
                continue;
            };
            let better = best.as_ref().is_none_or(|incumbent| match metric {
                Some(spec) => spec.is_better(value, incumbent.value),
                None => value > incumbent.value,
            });
            if better {
                best = Some(SearchBest {
                    key: key.clone(),
                    value,
                    hyperparameters: experiment.hyperparameters.clone(),
                });
            }
        }
        SearchInfo {
            id: state.id.clone(),
            project: state.project.clone(),
            optimizer: state.optimizer.clone(),
            experiments: keys,
            total: state.total,
            ended,
            failed,
            workers: state.slots.limit,
            metric: state.metric.clone(),
            best,
            done: state.done.load(Ordering::SeqCst),
            stopped: state.is_stopped(),
            error: lock(&state.error).clone(),
        }
    }

    /// Stops a search: no new experiments, and the queued and running ones
    /// are stopped.
    pub async fn stop_search(&self, id: &str, caller: &Caller) -> Result<SearchInfo, ApiError> {
        let state = self.searches.get(id).ok_or_else(|| search_not_found(id))?;
        state.stopped.store(true, Ordering::SeqCst);
        tracing::info!(search = id, by = caller.name, "search stop requested");
        let keys = lock(&state.keys).clone();
        for key in keys {
            let running = self.status(&key).is_some_and(|status| !status.is_final());
            if running {
                if let Err(error) = self.stop_experiment(&key, caller).await {
                    tracing::warn!(
                        search = id,
                        key,
                        error = error.message,
                        "cannot stop an experiment of the search"
                    );
                }
            }
        }
        let metric = state
            .metric
            .as_deref()
            .and_then(|text| MetricSpec::parse(text).ok());
        Ok(self.search_info(&state, metric.as_ref()))
    }
}

fn search_not_found(id: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        format!("search {id} not found: searches are known until studiod restarts; its experiments stay listed with `studio runs list project NAME`"),
    )
}

/// The script as a path relative to the working directory, which must
/// contain it (the workspace copy is made of that directory).
fn relative_script(cwd: &Path, script: &str) -> Result<String, ApiError> {
    let path = Path::new(script);
    let relative = if path.is_absolute() {
        path.strip_prefix(cwd).map(Path::to_path_buf).map_err(|_| {
            ApiError::bad_request(format!(
                "script {script} is outside the working directory {}: run the search from the directory that holds it",
                cwd.display()
            ))
        })?
    } else {
        path.to_path_buf()
    };
    if relative
        .components()
        .any(|component| matches!(component, std::path::Component::ParentDir))
    {
        return Err(ApiError::bad_request(format!(
            "script {script} is outside the working directory {}: run the search from the directory that holds it",
            cwd.display()
        )));
    }
    Ok(relative.to_string_lossy().into_owned())
}

/// True when `name` occurs in `text` as a whole word.
fn mentions(text: &str, name: &str) -> bool {
    let is_word = |character: Option<char>| {
        character.is_some_and(|character| character.is_alphanumeric() || character == '_')
    };
    text.match_indices(name).any(|(start, _)| {
        let before = text[..start].chars().next_back();
        let after = text[start + name.len()..].chars().next();
        !is_word(before) && !is_word(after)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_must_be_inside_the_workspace() {
        let cwd = Path::new("/work/project");
        assert_eq!(relative_script(cwd, "train.py").unwrap(), "train.py");
        assert_eq!(
            relative_script(cwd, "/work/project/src/t.py").unwrap(),
            "src/t.py"
        );
        assert!(relative_script(cwd, "../t.py").is_err());
        assert!(relative_script(cwd, "/elsewhere/t.py").is_err());
    }

    #[test]
    fn names_are_found_as_whole_words() {
        assert!(mentions("lr = 0.1\nprint(lr)\n", "lr"));
        assert!(mentions("lr = 0.1\n", "lr"));
        assert!(!mentions("lr_decay = 2\n", "lr"));
    }
}
