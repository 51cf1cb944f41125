//! studiod's local queue: experiments wait in status `queued` and a
//! scheduler starts them when their group has a free worker slot.
//!
//! A group is a hyperparameter search (its id) or `local` for `studio run
//! --queue local`. Each group has its own slot count (`--num-workers`, by
//! default one per free GPU, else one) and its own pool of GPUs. An
//! experiment started on a host with GPUs gets the pool's least used GPU as
//! `CUDA_VISIBLE_DEVICES`. What the scheduler needs to start an experiment
//! is kept in `queued.json` (mode 0600, because it holds the environment) in
//! the experiment's directory, so queued experiments survive a restart.
//! A started experiment's slot is recorded in `slot.json`, so a restarted
//! daemon that re-adopts the experiment still counts it against its group.

use crate::api::ApiError;
use crate::daemon::Daemon;
use crate::events::{self, Event, Finished};
use crate::runner::{validate_request, Caller};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use studio_core::api::{Experiment, RunRequest, Status};

/// File in the experiment's directory that contains its [`QueuedSpec`].
const QUEUED_FILE: &str = "queued.json";

/// File in the experiment's directory that records its [`Slot`] while it
/// runs.
const SLOT_FILE: &str = "slot.json";

/// GPUs whose used memory is below this many MiB count as free.
const FREE_GPU_MEMORY_MIB: u64 = 500;

/// Group of the experiments of `studio run --queue local`.
pub const LOCAL_GROUP: &str = "local";

/// Worker slots of a group and the GPUs they share.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Slots {
    pub limit: usize,
    pub gpus: Vec<u32>,
}

/// Everything the scheduler needs to start a queued experiment.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct QueuedSpec {
    key: String,
    request: RunRequest,
    uid: u32,
    gid: u32,
    user: String,
    group: String,
    slots: Slots,
}

#[derive(Serialize, Deserialize)]
struct Slot {
    group: String,
    gpu: Option<u32>,
}

#[derive(Default)]
struct QueueState {
    pending: VecDeque<QueuedSpec>,
    running: HashMap<String, Slot>,
}

/// The pending experiments and the slots in use; see the module comment.
#[derive(Default)]
pub struct LocalQueue {
    state: Mutex<QueueState>,
    wake: tokio::sync::Notify,
    scheduler_started: AtomicBool,
}

impl LocalQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Number of experiments of `group` started by the queue and not ended.
    pub fn running_in(&self, group: &str) -> usize {
        self.lock()
            .running
            .values()
            .filter(|slot| slot.group == group)
            .count()
    }

    /// Removes the pending experiments that can start now from the queue,
    /// with the GPU each one gets. `status` returns an experiment's current
    /// status; experiments no longer queued (stopped, deleted) are dropped.
    fn take_startable(
        &self,
        status: impl Fn(&str) -> Option<Status>,
    ) -> Vec<(QueuedSpec, Option<u32>)> {
        let mut state = self.lock();
        let mut startable = Vec::new();
        let mut kept = VecDeque::new();
        while let Some(spec) = state.pending.pop_front() {
            if status(&spec.key) != Some(Status::Queued) {
                continue;
            }
            let in_group: Vec<&Slot> = state
                .running
                .values()
                .filter(|slot| slot.group == spec.group)
                .collect();
            if in_group.len() >= spec.slots.limit.max(1) {
                kept.push_back(spec);
                continue;
            }
            let hide_gpus = spec.request.resources.gpus.is_some_and(|gpus| gpus < 0);
            let gpu = if hide_gpus {
                None
            } else {
                spec.slots.gpus.iter().copied().min_by_key(|gpu| {
                    state
                        .running
                        .values()
                        .filter(|slot| slot.gpu == Some(*gpu))
                        .count()
                })
            };
            state.running.insert(
                spec.key.clone(),
                Slot {
                    group: spec.group.clone(),
                    gpu,
                },
            );
            startable.push((spec, gpu));
        }
        state.pending = kept;
        startable
    }

    fn push(&self, spec: QueuedSpec) {
        self.lock().pending.push_back(spec);
        self.wake.notify_one();
    }

    fn hold(&self, key: &str, slot: Slot) {
        self.lock().running.insert(key.to_string(), slot);
    }

    fn release(&self, key: &str) {
        self.lock().running.remove(key);
        self.wake.notify_one();
    }
}

impl Daemon {
    /// `studio run --queue local`: queues one experiment in the `local`
    /// group.
    pub(crate) async fn enqueue_single(
        self: &Arc<Self>,
        request: RunRequest,
        caller: Caller,
    ) -> Result<Experiment, ApiError> {
        let module = request.script.contains("::");
        validate_request(&request, module)?;
        self.check_artifact_requests(&request, &caller)?;
        let slots = worker_slots(request.num_workers).await?;
        self.enqueue(request, &caller, LOCAL_GROUP, slots, |_, _| Ok(()))
            .await
    }

    /// Creates an experiment in status `queued` and hands it to the
    /// scheduler. `prepare` runs after the key is reserved and before the
    /// experiment is recorded, with the experiment's (empty) directory: it
    /// may build a workspace there and change the request to use it.
    pub(crate) async fn enqueue(
        self: &Arc<Self>,
        mut request: RunRequest,
        caller: &Caller,
        group: &str,
        slots: Slots,
        prepare: impl FnOnce(&Path, &mut RunRequest) -> Result<(), String>,
    ) -> Result<Experiment, ApiError> {
        let module = request.script.contains("::");
        let guard = self.creating.lock().await;
        let key = self.new_key(&request)?;
        let directory = self.paths.experiment_dir(&key);
        if directory.exists() {
            tracing::warn!(key, dir = %directory.display(), "removing files left by a deleted experiment");
            std::fs::remove_dir_all(&directory).map_err(|error| {
                ApiError::internal(format!("cannot clear {}: {error}", directory.display()))
            })?;
        }
        std::fs::create_dir_all(&directory).map_err(|error| {
            ApiError::internal(format!("cannot create {}: {error}", directory.display()))
        })?;
        // Building a workspace walks the whole tree, so it must not hold up
        // the runtime's other tasks.
        let prepared = tokio::task::block_in_place(|| prepare(&directory, &mut request));
        if let Err(reason) = prepared {
            let _ = std::fs::remove_dir_all(&directory);
            return Err(ApiError::internal(format!(
                "cannot prepare experiment {key}: {reason}"
            )));
        }
        request.experiment = Some(key.clone());
        let spec = QueuedSpec {
            key: key.clone(),
            request: request.clone(),
            uid: caller.uid,
            gid: caller.gid,
            user: caller.name.clone(),
            group: group.to_string(),
            slots,
        };
        crate::supervisor::write_json_atomic(&directory.join(QUEUED_FILE), &spec, 0o600, false)
            .map_err(|error| ApiError::internal(format!("cannot write {QUEUED_FILE}: {error}")))?;

        let created = self.created_event(&request, caller, module);
        self.log
            .append_all(vec![
                (key.clone(), Event::ExperimentCreated(Box::new(created))),
                (key.clone(), Event::ExperimentQueued),
            ])
            .await?;
        drop(guard);
        tracing::info!(key, group, owner = caller.name, "experiment queued");

        self.queue.push(spec);
        self.ensure_scheduler();
        self.experiment(&key)
            .ok_or_else(|| ApiError::not_found(&key))
    }

    /// Puts a queued experiment found in the log at start-up back on the
    /// queue. Returns false when it is not queued or its spec is unreadable.
    pub(crate) async fn requeue(self: &Arc<Self>, key: &str) -> bool {
        if self.experiment(key).map(|experiment| experiment.status) != Some(Status::Queued) {
            return false;
        }
        let path = self.paths.experiment_dir(key).join(QUEUED_FILE);
        let spec = std::fs::read(&path)
            .map_err(|error| error.to_string())
            .and_then(|bytes| {
                serde_json::from_slice::<QueuedSpec>(&bytes).map_err(|error| error.to_string())
            });
        match spec {
            Ok(spec) => {
                tracing::info!(key, "queued experiment put back on the queue");
                self.queue.push(spec);
                self.ensure_scheduler();
                true
            }
            Err(error) => {
                tracing::warn!(key, path = %path.display(), %error, "cannot read the queued experiment's spec");
                false
            }
        }
    }

    fn ensure_scheduler(self: &Arc<Self>) {
        if !self.queue.scheduler_started.swap(true, Ordering::SeqCst) {
            tracing::info!("local queue scheduler started");
            tokio::spawn(self.clone().schedule());
        }
    }

    async fn schedule(self: Arc<Self>) {
        loop {
            let startable = self
                .queue
                .take_startable(|key| self.experiment(key).map(|experiment| experiment.status));
            for (spec, gpu) in startable {
                tokio::spawn(self.clone().run_queued(spec, gpu));
            }
            tokio::select! {
                _ = self.queue.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Starts a queued experiment, waits for it to end and frees its slot.
    async fn run_queued(self: Arc<Self>, spec: QueuedSpec, gpu: Option<u32>) {
        let key = spec.key.clone();
        let events = self.events.subscribe();
        let mut request = spec.request;
        if let Some(gpu) = gpu {
            request
                .env
                .insert("CUDA_VISIBLE_DEVICES".into(), gpu.to_string());
            request
                .env
                .insert("CUDA_DEVICE_ORDER".into(), "PCI_BUS_ID".into());
        }
        let caller = Caller {
            uid: spec.uid,
            gid: spec.gid,
            name: spec.user,
        };
        let module = request.script.contains("::");
        let waited = self
            .experiment(&key)
            .map_or(0.0, |experiment| events::now() - experiment.time_added);
        let outcome = if request.lifetime.is_some_and(|lifetime| waited > lifetime) {
            Err((
                true,
                format!("its --lifetime expired after {waited:.0}s on the queue"),
            ))
        } else {
            tracing::info!(key, ?gpu, "starting a queued experiment");
            self.launch(&key, &request, &caller, module)
                .await
                .map_err(|reason| (false, reason))
        };
        let directory = self.paths.experiment_dir(&key);
        let _ = std::fs::remove_file(directory.join(QUEUED_FILE));
        if outcome.is_ok() {
            let slot = Slot {
                group: spec.group.clone(),
                gpu,
            };
            if let Err(error) = crate::supervisor::write_json_atomic(
                &directory.join(SLOT_FILE),
                &slot,
                0o644,
                false,
            ) {
                tracing::warn!(key, %error, "cannot record the queue slot; a restarted studiod will not count it");
            }
        }
        if let Err((stopped, reason)) = outcome {
            tracing::error!(key, error = %reason, "queued experiment did not start");
            let finished = Finished {
                exit_code: None,
                signal: None,
                stopped,
                reason: Some(reason),
                time: events::now(),
            };
            if let Err(error) = self
                .log
                .append(&key, Event::ExperimentFinished(finished))
                .await
            {
                tracing::error!(key, %error, "cannot record that the experiment did not start");
            }
        }
        self.release_when_ended(&key, events).await;
    }

    /// Waits until the experiment `key` has a final status, then frees its
    /// slot.
    async fn release_when_ended(
        &self,
        key: &str,
        mut events: tokio::sync::broadcast::Receiver<Arc<crate::events::Envelope>>,
    ) {
        while self.status(key).is_some_and(|status| !status.is_final()) {
            tokio::select! {
                _ = events.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        let _ = std::fs::remove_file(self.paths.experiment_dir(key).join(SLOT_FILE));
        self.queue.release(key);
    }

    /// Counts a re-adopted experiment that the queue started against its
    /// group's slots again, until it ends. Call before queued experiments
    /// are put back, so that they wait for the slot.
    pub(crate) fn hold_slot_again(self: &Arc<Self>, key: &str) {
        let path = self.paths.experiment_dir(key).join(SLOT_FILE);
        let Ok(bytes) = std::fs::read(&path) else {
            return;
        };
        match serde_json::from_slice::<Slot>(&bytes) {
            Ok(slot) => {
                tracing::info!(key, group = slot.group, gpu = ?slot.gpu, "re-adopted experiment takes its queue slot again");
                let events = self.events.subscribe();
                self.queue.hold(key, slot);
                let daemon = self.clone();
                let key = key.to_string();
                tokio::spawn(async move { daemon.release_when_ended(&key, events).await });
            }
            Err(error) => {
                tracing::warn!(key, path = %path.display(), %error, "cannot read the experiment's queue slot");
            }
        }
    }
}

/// Slots for a group: `requested` or one per free GPU, at least one.
pub(crate) async fn worker_slots(requested: Option<u32>) -> Result<Slots, ApiError> {
    if requested == Some(0) {
        return Err(ApiError::bad_request(
            "invalid --num-workers 0: run at least 1 experiment at a time",
        ));
    }
    let gpus = free_gpus().await;
    let limit = requested.map_or(gpus.len(), |count| count as usize).max(1);
    Ok(Slots { limit, gpus })
}

/// Indexes of the GPUs that `nvidia-smi` lists with less than
/// [`FREE_GPU_MEMORY_MIB`] in use; empty without `nvidia-smi`.
pub(crate) async fn free_gpus() -> Vec<u32> {
    let mut command = tokio::process::Command::new("nvidia-smi");
    command
        .args([
            "--query-gpu=index,memory.used",
            "--format=csv,noheader,nounits",
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(Duration::from_secs(10), command.output()).await {
        Ok(Ok(output)) if output.status.success() => output,
        Ok(Ok(output)) => {
            tracing::warn!(status = %output.status, "nvidia-smi failed; running without GPUs");
            return Vec::new();
        }
        Ok(Err(_)) => return Vec::new(),
        Err(_) => {
            tracing::warn!("nvidia-smi timed out after 10s; running without GPUs");
            return Vec::new();
        }
    };
    parse_free_gpus(&String::from_utf8_lossy(&output.stdout))
}

fn parse_free_gpus(text: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|line| {
            let (index, used) = line.split_once(',')?;
            let index = index.trim().parse::<u32>().ok()?;
            let used = used.trim().parse::<u64>().ok()?;
            (used < FREE_GPU_MEMORY_MIB).then_some(index)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_gpus_are_not_free() {
        let text = "0, 3\n1, 40000\n2, 499\nbad line\n";
        assert_eq!(parse_free_gpus(text), [0, 2]);
    }

    fn spec(key: &str, group: &str, limit: usize, gpus: &[u32]) -> QueuedSpec {
        QueuedSpec {
            key: key.into(),
            request: RunRequest::default(),
            uid: 0,
            gid: 0,
            user: "ada".into(),
            group: group.into(),
            slots: Slots {
                limit,
                gpus: gpus.to_vec(),
            },
        }
    }

    #[test]
    fn groups_keep_their_slot_limits() {
        let queue = LocalQueue::default();
        for index in 0..5 {
            queue.push(spec(&format!("a{index}"), "a", 2, &[0, 1]));
        }
        queue.push(spec("b0", "b", 1, &[]));
        queue.push(spec("gone", "b", 1, &[]));
        let status = |key: &str| (key != "gone").then_some(Status::Queued);
        let started = queue.take_startable(status);
        let keys: Vec<_> = started.iter().map(|(spec, _)| spec.key.as_str()).collect();
        assert_eq!(keys, ["a0", "a1", "b0"]);
        let gpus: Vec<_> = started.iter().map(|(_, gpu)| *gpu).collect();
        assert_eq!(gpus, [Some(0), Some(1), None]);
        assert_eq!(queue.running_in("a"), 2);

        queue.release("a1");
        let next = queue.take_startable(status);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].0.key, "a2");
        assert_eq!(next[0].1, Some(1));
        assert!(queue.take_startable(status).is_empty());
    }
}
