//! Hyperparameter searches: a batch of experiments of one project, each in
//! its own workspace with the values substituted, run through the local
//! queue. An optimizer proposes the values; adaptive ones (CMA-ES, plugins)
//! get each generation's fitness before they propose the next.

pub mod cmaes;
pub mod optimizer;
pub mod plugin;
pub mod routes;
pub mod workspace;

use crate::api::ApiError;
use crate::daemon::Daemon;
use crate::metrics::{parse_fitness, FitnessReport};
use crate::queue::{worker_slots, Slots};
use crate::runner::{validate_key, validate_request, Caller};
use optimizer::{Candidate, GridOptimizer, Optimizer, OptimizerSettings, RandomOptimizer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use studio_core::api::{RunRequest, SearchBest, SearchInfo, SearchRequest, Status};
use studio_core::hyperparam::{grid_product, grid_size, parse_grid, MetricSpec, OptimizerParam};

/// Most experiments one grid search may create.
const MAX_GRID: usize = 100_000;

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
            let running = self
                .experiment(&key)
                .is_some_and(|experiment| !experiment.status.is_final());
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

    /// Runs the search: ask, create, wait, tell, until the optimizer has no
    /// more candidates or the search is stopped.
    async fn drive(
        self: Arc<Self>,
        state: Arc<SearchState>,
        mut optimizer: Box<dyn Optimizer>,
        template: RunRequest,
        caller: Caller,
        settings: OptimizerSettings,
    ) {
        let mut generation = 0;
        loop {
            if state.is_stopped() {
                break;
            }
            let batch = match tokio::task::block_in_place(|| optimizer.ask()) {
                Ok(batch) => batch,
                Err(error) => {
                    state.fail(format!("the optimizer's ask() failed: {error}"));
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            let mut keys = Vec::with_capacity(batch.len());
            for candidate in batch {
                if state.is_stopped() {
                    break;
                }
                match self
                    .create_candidate(&state, &template, &caller, candidate)
                    .await
                {
                    Ok(key) => keys.push(key),
                    Err(error) => {
                        state.fail(error);
                        state.stopped.store(true, Ordering::SeqCst);
                        break;
                    }
                }
            }
            if !optimizer.adapts() || state.is_stopped() {
                continue;
            }
            self.wait_for_generation(&state, &keys, &settings, &caller)
                .await;
            if state.is_stopped() {
                break;
            }
            let reports: Vec<FitnessReport> = keys
                .iter()
                .map(|key| {
                    let output = std::fs::read_to_string(self.output_path(key)).unwrap_or_default();
                    parse_fitness(&output)
                })
                .collect();
            {
                let mut fitness = lock(&state.fitness);
                for (key, report) in keys.iter().zip(&reports) {
                    if let Some(value) = report.fitness {
                        fitness.insert(key.clone(), value);
                    }
                }
            }
            generation += 1;
            let best = reports
                .iter()
                .filter_map(|report| report.fitness)
                .fold(f64::NEG_INFINITY, f64::max);
            tracing::info!(
                search = state.id,
                generation,
                best_fitness = best,
                "generation ended"
            );
            if let Err(error) = tokio::task::block_in_place(|| optimizer.tell(&reports)) {
                state.fail(format!("the optimizer's tell() failed: {error}"));
                break;
            }
        }
        drop(optimizer);

        let keys = lock(&state.keys).clone();
        if state.is_stopped() {
            // Experiments created while the stop request went through were
            // not in its list.
            for key in &keys {
                let running = self
                    .experiment(key)
                    .is_some_and(|experiment| !experiment.status.is_final());
                if running {
                    if let Err(error) = self.stop_experiment(key, &caller).await {
                        tracing::warn!(
                            search = state.id,
                            key,
                            error = error.message,
                            "cannot stop an experiment of the search"
                        );
                    }
                }
            }
        }
        let metric = state.metric.is_some();
        loop {
            let pending = keys.iter().any(|key| {
                self.experiment(key)
                    .is_some_and(|experiment| !experiment.status.is_final())
            });
            if !pending {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if metric {
            let deadline = Instant::now() + METRIC_GRACE;
            while Instant::now() < deadline
                && keys.iter().any(|key| {
                    self.experiment(key)
                        .is_some_and(|experiment| experiment.time_started.is_some())
                        && !self.searches.is_metrics_done(key)
                })
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // The experiments' workspaces keep their hard links, so removing the
        // base frees only what no experiment uses.
        if let Err(error) = std::fs::remove_dir_all(state.directory.join("base")) {
            tracing::warn!(search = state.id, %error, "cannot remove the search's workspace copy");
        }
        state.done.store(true, Ordering::SeqCst);
        tracing::info!(search = state.id, experiments = keys.len(), "search ended");
    }

    /// Waits until every experiment of a generation has ended. When
    /// `skip_gen_thres` of them have ended and no result came for
    /// `skip_gen_timeout` seconds, it stops the rest and returns.
    async fn wait_for_generation(
        &self,
        state: &SearchState,
        keys: &[String],
        settings: &OptimizerSettings,
        caller: &Caller,
    ) {
        let mut last_count = 0;
        let mut last_change = Instant::now();
        loop {
            let ended = keys
                .iter()
                .filter(|key| {
                    self.experiment(key)
                        .is_none_or(|experiment| experiment.status.is_final())
                })
                .count();
            if ended == keys.len() || state.is_stopped() {
                return;
            }
            if ended != last_count {
                last_count = ended;
                last_change = Instant::now();
            }
            let fraction = ended as f64 / keys.len() as f64;
            let waited = last_change.elapsed().as_secs_f64();
            if ended > 0
                && fraction >= settings.skip_gen_thres
                && waited >= settings.skip_gen_timeout
            {
                tracing::info!(
                    search = state.id,
                    ended,
                    total = keys.len(),
                    "skipping the rest of the generation"
                );
                for key in keys {
                    let _ = self.stop_experiment(key, caller).await;
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Creates one queued experiment of the search, with its workspace.
    async fn create_candidate(
        self: &Arc<Self>,
        state: &SearchState,
        template: &RunRequest,
        caller: &Caller,
        candidate: Candidate,
    ) -> Result<String, String> {
        let index = state.next_index.fetch_add(1, Ordering::SeqCst);
        let mut request = template.clone();
        request.experiment = Some(format!("{}_{index:04}", state.key_prefix));
        request.hyperparameters = candidate.describe();
        let base = state.directory.join("base");
        let script = template.script.clone();
        let prepare = move |directory: &Path, request: &mut RunRequest| -> Result<(), String> {
            let workspace_dir = directory.join("workspace");
            workspace::build(&base, &workspace_dir, &script, &candidate.scalars).map_err(
                |error| {
                    format!(
                        "cannot build the workspace {}: {error}",
                        workspace_dir.display()
                    )
                },
            )?;
            request.cwd = workspace_dir;
            for (name, values) in &candidate.arrays {
                let path = directory.join(format!("{name}.npy"));
                workspace::write_npy(&path, values)
                    .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
                request.extra_artifacts.insert(name.clone(), path);
            }
            Ok(())
        };
        let experiment = self
            .enqueue(request, caller, &state.id, state.slots.clone(), prepare)
            .await
            .map_err(|error| error.message)?;
        lock(&state.keys).push(experiment.key.clone());
        Ok(experiment.key)
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

/// The optimizer and its parameters, checked before anything is copied.
enum Plan {
    Grid(Vec<BTreeMap<String, String>>),
    Random(Vec<OptimizerParam>, usize),
    Cmaes(Vec<OptimizerParam>),
    Plugin(PathBuf, Vec<OptimizerParam>, serde_json::Value),
}

impl Plan {
    fn total(&self) -> Option<usize> {
        match self {
            Plan::Grid(combinations) => Some(combinations.len()),
            Plan::Random(_, trials) => Some(*trials),
            Plan::Cmaes(_) | Plan::Plugin(..) => None,
        }
    }

    fn scalar_names(&self) -> Vec<String> {
        match self {
            Plan::Grid(combinations) => combinations
                .first()
                .map(|combination| combination.keys().cloned().collect())
                .unwrap_or_default(),
            Plan::Random(params, _) | Plan::Cmaes(params) | Plan::Plugin(_, params, _) => params
                .iter()
                .filter(|param| param.array_length.is_none())
                .map(|param| param.name.clone())
                .collect(),
        }
    }

    fn build(
        &self,
        settings: &OptimizerSettings,
        directory: &Path,
        template: &RunRequest,
    ) -> Result<Box<dyn Optimizer>, String> {
        Ok(match self {
            Plan::Grid(combinations) => Box::new(GridOptimizer::new(combinations.clone())),
            Plan::Random(params, trials) => {
                Box::new(RandomOptimizer::new(params.clone(), *trials, settings.seed))
            }
            Plan::Cmaes(params) => Box::new(cmaes::CmaEs::new(params.clone(), settings)),
            Plan::Plugin(path, params, config) => {
                let driver = directory.join("plugin_driver.py");
                std::fs::write(&driver, plugin::DRIVER)
                    .map_err(|error| format!("cannot write {}: {error}", driver.display()))?;
                let mut env = template.env.clone();
                env.extend(template.config_env.clone());
                Box::new(plugin::PluginOptimizer::start(
                    &template.python,
                    &driver,
                    path,
                    params.clone(),
                    config,
                    &directory.join("optimizer.log"),
                    &env,
                )?)
            }
        })
    }
}

fn plan_optimizer(
    name: &str,
    hyperparams: &[String],
    settings: &OptimizerSettings,
    cwd: &Path,
    config: &serde_json::Value,
) -> Result<Plan, ApiError> {
    let bad =
        |error: studio_core::hyperparam::HyperparamError| ApiError::bad_request(error.to_string());
    let optimizer_params = || -> Result<Vec<OptimizerParam>, ApiError> {
        let params: Vec<OptimizerParam> = hyperparams
            .iter()
            .map(|argument| OptimizerParam::parse(argument))
            .collect::<Result<_, _>>()
            .map_err(bad)?;
        check_unique(params.iter().map(|param| param.name.as_str()))?;
        Ok(params)
    };
    match name {
        "grid" => {
            let params: Vec<_> = hyperparams
                .iter()
                .map(|argument| parse_grid(argument))
                .collect::<Result<_, _>>()
                .map_err(bad)?;
            check_unique(params.iter().map(|param| param.name.as_str()))?;
            match grid_size(&params) {
                Some(size) if size <= MAX_GRID => Ok(Plan::Grid(grid_product(&params))),
                _ => Err(ApiError::bad_request(format!(
                    "the grid has more than {MAX_GRID} combinations: use fewer values or the random optimizer"
                ))),
            }
        }
        "random" => Ok(Plan::Random(optimizer_params()?, settings.trials)),
        "cmaes" => Ok(Plan::Cmaes(optimizer_params()?)),
        other => {
            if let Some(trials) = other.strip_prefix("random:") {
                let trials = trials.parse::<usize>().ok().filter(|trials| *trials > 0).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "invalid --optimizer {other:?}: write random:N with a trial count N of at least 1"
                    ))
                })?;
                return Ok(Plan::Random(optimizer_params()?, trials));
            }
            let path = cwd.join(other);
            if !other.ends_with(".py") || !path.is_file() {
                return Err(ApiError::bad_request(format!(
                    "unknown --optimizer {other:?}: use grid, random, random:N, cmaes, or the path of a Python file that defines an Optimizer class"
                )));
            }
            Ok(Plan::Plugin(path, optimizer_params()?, config.clone()))
        }
    }
}

fn check_unique<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(ApiError::bad_request(format!(
                "hyperparameter {name} is given twice: give each name one --hyperparam"
            )));
        }
    }
    Ok(())
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

    #[test]
    fn plans_check_names_and_optimizers() {
        let settings = OptimizerSettings::default();
        let cwd = Path::new("/nonexistent");
        let strings = |items: &[&str]| {
            items
                .iter()
                .map(|item| item.to_string())
                .collect::<Vec<_>>()
        };
        let grid = plan_optimizer(
            "grid",
            &strings(&["a=1,2", "b=1:3"]),
            &settings,
            cwd,
            &serde_json::Value::Null,
        )
        .unwrap();
        assert_eq!(grid.total(), Some(6));
        let twice = plan_optimizer(
            "grid",
            &strings(&["a=1", "a=2"]),
            &settings,
            cwd,
            &serde_json::Value::Null,
        );
        assert!(twice.is_err());
        let random = plan_optimizer(
            "random:7",
            &strings(&["a=0:1"]),
            &settings,
            cwd,
            &serde_json::Value::Null,
        )
        .unwrap();
        assert_eq!(random.total(), Some(7));
        assert!(plan_optimizer(
            "random:0",
            &strings(&["a=0:1"]),
            &settings,
            cwd,
            &serde_json::Value::Null
        )
        .is_err());
        let unknown = plan_optimizer(
            "bayes",
            &strings(&["a=0:1"]),
            &settings,
            cwd,
            &serde_json::Value::Null,
        );
        assert!(unknown
            .err()
            .unwrap()
            .message
            .contains("unknown --optimizer"));
    }
}
