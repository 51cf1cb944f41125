//! The loop of a running search: ask the optimizer, create the queued
//! experiments with their workspaces, wait for a generation, tell the
//! fitness, and finally wait for every experiment to end.

use super::optimizer::{Candidate, Optimizer, OptimizerSettings};
use super::{lock, workspace, SearchState, METRIC_GRACE};
use crate::daemon::Daemon;
use crate::metrics::{parse_fitness, FitnessReport};
use crate::runner::Caller;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use studio_core::api::RunRequest;

impl Daemon {
    /// Runs the search: ask, create, wait, tell, until the optimizer has no
    /// more candidates or the search is stopped.
    pub(super) async fn drive(
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
                let running = self.status(key).is_some_and(|status| !status.is_final());
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
            let pending = keys
                .iter()
                .any(|key| self.status(key).is_some_and(|status| !status.is_final()));
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
        // Removed only when empty: a plugin optimizer may have left files.
        let _ = std::fs::remove_dir(&state.directory);
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
                .filter(|key| self.status(key).is_none_or(|status| status.is_final()))
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
