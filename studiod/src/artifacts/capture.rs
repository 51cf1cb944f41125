//! Capturing an experiment's artifacts: the plan made at start, the
//! start-up snapshots, the periodic captures of mutable artifacts, the final
//! capture before `ExperimentFinished`, and freeing blobs on delete.

use super::pack::{self, Packed};
use super::store::UploadProgress;
use super::validate_tag;
use crate::api::ApiError;
use crate::daemon::Daemon;
use crate::events::{ArtifactStored, Event};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use studio_core::api::{ArtifactRequest, CaptureProgress, CaptureState, RunRequest};
use tokio::io::AsyncWriteExt;

/// File in the experiment's directory that keeps the plan, so that a
/// restarted daemon still makes the final capture.
const PLAN_FILE: &str = "capture.json";

/// A path given as `null` drops the artifact of that tag (for example
/// `--capture-once=null:workspace` skips the workspace snapshot).
const DISABLED_PATH: &str = "null";

/// One artifact that the daemon packs and stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    pub tag: String,
    pub path: PathBuf,
    /// Captured again periodically and at the end, not only at start.
    pub mutable: bool,
    /// Leaves out what `.studioml_ignore` files list (the workspace).
    pub honour_ignore_file: bool,
}

/// Captures and mapping that the runner prepared for one experiment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    pub captures: Vec<Planned>,
    /// Tag to path, given to the script as `STUDIOML_ARTIFACT_MAPPING`.
    pub mapping: BTreeMap<String, PathBuf>,
}

/// Progress of one capture: files read while packing, then the packed blob
/// sent to the store.
#[derive(Default)]
struct Counters {
    read: Arc<AtomicU64>,
    to_read: AtomicU64,
    upload: Arc<UploadProgress>,
    to_send: AtomicU64,
}

/// The captures of one running experiment.
#[derive(Default)]
pub struct Session {
    /// Held for a whole round of captures, so two rounds never pack the
    /// same artifact at once.
    round: tokio::sync::Mutex<()>,
    /// Progress of each capture that runs now, by tag.
    progress: Mutex<BTreeMap<String, Arc<Counters>>>,
    final_capture: AtomicBool,
    stop: tokio::sync::Notify,
    stopped: AtomicBool,
    pending: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Session {
    fn begin(&self, tag: &str) -> Arc<Counters> {
        let counters = Arc::new(Counters::default());
        lock(&self.progress).insert(tag.to_string(), counters.clone());
        counters
    }

    fn end(&self, tag: &str) {
        lock(&self.progress).remove(tag);
    }

    async fn wait_stopped(&self) {
        let notified = self.stop.notified();
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Daemon {
    /// Rejects invalid artifact flags before anything is created: invalid
    /// or duplicate tags, missing `--capture-once` paths, URLs that are not
    /// http(s), and unknown experiments or tags to reuse.
    pub(crate) fn check_artifact_requests(
        &self,
        request: &RunRequest,
        caller: &crate::runner::Caller,
    ) -> Result<(), ApiError> {
        // studiod running as root packs files with root's rights: it must
        // not store, and so hand out, paths the submitting user cannot read.
        if self.uid == 0 && caller.uid != 0 {
            let paths = request
                .artifacts
                .iter()
                .filter_map(|artifact| match artifact {
                    ArtifactRequest::CaptureOnce { path, .. }
                    | ArtifactRequest::Capture { path, .. } => Some(path.as_path()),
                    _ => None,
                });
            for path in paths.chain(std::iter::once(request.cwd.as_path())) {
                if path.exists() && !readable_by(path, caller.uid) {
                    return Err(ApiError::forbidden(format!(
                        "{} may not capture {}: the path is not readable by that user",
                        caller.name,
                        path.display()
                    )));
                }
            }
        }
        let mut seen = HashSet::new();
        for artifact in &request.artifacts {
            let tag = artifact.tag();
            validate_tag(tag).map_err(ApiError::bad_request)?;
            if !seen.insert(tag) {
                return Err(ApiError::bad_request(format!(
                    "artifact tag {tag:?} is given twice: give each --capture, --capture-once and --reuse its own tag"
                )));
            }
            match artifact {
                ArtifactRequest::CaptureOnce { path, .. } => {
                    if path.as_os_str() != DISABLED_PATH && std::fs::symlink_metadata(path).is_err()
                    {
                        return Err(ApiError::bad_request(format!(
                            "--capture-once path {} does not exist: check the path before {tag:?}",
                            path.display()
                        )));
                    }
                }
                ArtifactRequest::Capture { path, .. } => {
                    if !path.is_absolute() {
                        return Err(ApiError::bad_request(format!(
                            "--capture path {} is relative: send an absolute path",
                            path.display()
                        )));
                    }
                }
                ArtifactRequest::Download { url, .. } => {
                    if let Some(parsed) = super::remote::ObjectUrl::parse(url) {
                        parsed.map_err(ApiError::bad_request)?;
                    } else if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(ApiError::bad_request(format!(
                            "invalid --capture-once URL {url:?}: use http://, https://, s3:// or gs://"
                        )));
                    }
                }
                ArtifactRequest::Reuse {
                    experiment,
                    source_tag,
                    ..
                } => {
                    let Some(other) = self.experiment(experiment) else {
                        return Err(ApiError::bad_request(format!(
                            "--reuse {experiment}/{source_tag}: experiment {experiment} not found; list experiments with `studio runs list all`"
                        )));
                    };
                    if !other.artifacts.contains_key(source_tag) {
                        let known: Vec<_> = other.artifacts.keys().cloned().collect();
                        return Err(ApiError::bad_request(format!(
                            "--reuse {experiment}/{source_tag}: experiment {experiment} has no stored artifact {source_tag:?}; it has: {}",
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Builds the experiment's artifacts: the defaults (`workspace`,
    /// `output`, `modeldir`, `tb`, `_metrics`) overridden by the flags.
    /// Creates the directories, unpacks reused artifacts and downloads URLs
    /// because the script needs them before it starts, and writes the plan.
    pub(crate) async fn prepare_artifacts(
        &self,
        key: &str,
        request: &RunRequest,
    ) -> Result<BTreeMap<String, PathBuf>, String> {
        let experiment_dir = self.paths.experiment_dir(key);
        let mut plan = default_plan(&experiment_dir, &request.cwd);
        for artifact in &request.artifacts {
            let tag = artifact.tag().to_string();
            plan.captures.retain(|planned| planned.tag != tag);
            plan.mapping.remove(&tag);
            match artifact {
                ArtifactRequest::CaptureOnce { path, .. }
                | ArtifactRequest::Capture { path, .. }
                    if path.as_os_str() == DISABLED_PATH => {}
                ArtifactRequest::CaptureOnce { path, .. } => {
                    plan.add(&tag, path.clone(), false, false);
                }
                ArtifactRequest::Capture { path, .. } => {
                    // NOTE: a root studiod creates this directory as root;
                    // only the experiment's own directory is handed over.
                    if std::fs::symlink_metadata(path).is_err() {
                        std::fs::create_dir_all(path).map_err(|error| {
                            format!("cannot create --capture path {}: {error}", path.display())
                        })?;
                    }
                    plan.add(&tag, path.clone(), true, false);
                }
                ArtifactRequest::Download { url, .. } => {
                    let cache = self.artifacts.blob_cache.join("downloads");
                    let downloaded = match super::remote::ObjectUrl::parse(url) {
                        Some(Ok(object)) => {
                            super::remote::download_url(&object, &self.config.storage, &cache).await
                        }
                        Some(Err(error)) => Err(error),
                        None => super::download::download(url, &cache).await,
                    };
                    let file = downloaded.map_err(|error| {
                        format!("cannot download {url} for artifact {tag:?}: {error}")
                    })?;
                    plan.add(&tag, file, false, false);
                }
                ArtifactRequest::Reuse {
                    experiment,
                    source_tag,
                    ..
                } => {
                    let view = self
                        .experiment(experiment)
                        .and_then(|other| other.artifacts.get(source_tag).cloned())
                        .ok_or_else(|| {
                            format!("artifact {experiment}/{source_tag} is no longer stored")
                        })?;
                    let path = self
                        .unpack_cached(&view.digest, view.file.as_deref())
                        .await?;
                    plan.mapping.insert(tag.clone(), path);
                }
            }
        }
        for planned in &plan.captures {
            if planned.mutable
                && planned.path.starts_with(&experiment_dir)
                && planned.tag != "output"
            {
                std::fs::create_dir_all(&planned.path).map_err(|error| {
                    format!("cannot create {}: {error}", planned.path.display())
                })?;
            }
        }
        let plan_file = experiment_dir.join(PLAN_FILE);
        crate::supervisor::write_json_atomic(&plan_file, &plan, 0o600, false)
            .map_err(|error| format!("cannot write {}: {error}", plan_file.display()))?;
        Ok(plan.mapping)
    }

    /// Starts the background work of a started experiment: the start-up
    /// snapshots, the periodic captures and the metrics sampler. None of it
    /// blocks the script.
    pub(crate) fn start_captures(self: &Arc<Self>, key: &str, pid: u32) {
        let Some(plan) = self.read_plan(key) else {
            return;
        };
        let session = self.session(key);
        for planned in plan.captures.iter().filter(|planned| !planned.mutable) {
            let daemon = self.clone();
            let key = key.to_string();
            let planned = planned.clone();
            let task_session = session.clone();
            let handle = tokio::spawn(async move {
                if let Err(error) = daemon.capture(&key, &task_session, &planned).await {
                    tracing::error!(key, tag = planned.tag, %error, "start-up capture failed");
                }
            });
            lock(&session.pending).push(handle);
        }

        let interval = Duration::from_secs_f64(self.config.save_workspace_frequency.max(0.1));
        let daemon = self.clone();
        let loop_key = key.to_string();
        let loop_session = session.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = loop_session.wait_stopped() => return,
                }
                daemon.capture_round(&loop_key, &loop_session, true).await;
            }
        });

        if let Some(metrics) = plan
            .captures
            .iter()
            .find(|planned| planned.tag == "_metrics")
        {
            let interval = Duration::from_secs_f64(self.config.save_metrics_frequency.max(0.1));
            let file = metrics.path.join("metrics.jsonl");
            let sampler_session = session.clone();
            tokio::spawn(async move {
                super::metrics::sample_until(file, pid, interval, sampler_session.wait_stopped())
                    .await;
            });
        }
        tracing::info!(key, artifacts = plan.captures.len(), "captures started");
    }

    /// Stores the last version of every mutable artifact after the script
    /// ended, once the captures still running are done. The runner calls it
    /// before it records the end, so a final status implies final artifacts.
    pub(crate) async fn final_capture(&self, key: &str) {
        let session = self.session(key);
        session.final_capture.store(true, Ordering::Release);
        session.stopped.store(true, Ordering::Release);
        session.stop.notify_waiters();
        let pending: Vec<_> = lock(&session.pending).drain(..).collect();
        for handle in pending {
            let _ = handle.await;
        }
        if let Some(plan) = self.read_plan(key) {
            if let Some(metrics) = plan
                .captures
                .iter()
                .find(|planned| planned.tag == "_metrics")
            {
                super::metrics::sample_once(&metrics.path.join("metrics.jsonl")).await;
            }
        }
        let failures = self.capture_round(key, &session, false).await;
        lock(&self.artifacts.sessions).remove(key);
        if failures.is_empty() {
            tracing::info!(key, "final capture stored");
            return;
        }
        // The end of the experiment is recorded after this, so it shows
        // the experiment failed with these errors instead of finished.
        let event = Event::ArtifactsNotStored { errors: failures };
        if let Err(error) = self.log.append(key, event).await {
            tracing::error!(key, %error, "cannot record the artifacts that were not stored");
        }
    }

    /// Frees the blobs of a deleted experiment that no other experiment
    /// references.
    pub(crate) async fn free_blobs(&self, key: &str, digests: Vec<String>) {
        for digest in digests {
            let _guard = self.artifacts.blob_locks.lock(&digest).await;
            if self.read_projection().blobs.is_referenced(&digest) {
                continue;
            }
            match self.artifacts.store.delete(&digest).await {
                Ok(()) => tracing::info!(key, digest, "freed an artifact blob"),
                Err(error) => tracing::warn!(key, digest, %error, "cannot free an artifact blob"),
            }
        }
    }

    /// Returns the captures of `key` that run now.
    pub fn capture_progress(&self, key: &str) -> CaptureProgress {
        let Some(session) = lock(&self.artifacts.sessions).get(key).cloned() else {
            return CaptureProgress::default();
        };
        let running = lock(&session.progress)
            .iter()
            .map(|(tag, counters)| CaptureState {
                tag: tag.clone(),
                bytes_read: counters.read.load(Ordering::Relaxed),
                bytes_total: counters.to_read.load(Ordering::Relaxed),
                bytes_sent: counters.upload.sent.load(Ordering::Relaxed),
                retrying: counters.upload.retrying(),
                bytes_to_send: counters.to_send.load(Ordering::Relaxed),
            })
            .collect();
        CaptureProgress {
            final_capture: session.final_capture.load(Ordering::Acquire),
            running,
        }
    }

    fn session(&self, key: &str) -> Arc<Session> {
        lock(&self.artifacts.sessions)
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    fn read_plan(&self, key: &str) -> Option<Plan> {
        let path = self.paths.experiment_dir(key).join(PLAN_FILE);
        let text = std::fs::read(&path).ok()?;
        match serde_json::from_slice(&text) {
            Ok(plan) => Some(plan),
            Err(error) => {
                tracing::error!(key, path = %path.display(), %error, "unreadable capture plan; artifacts are not captured");
                None
            }
        }
    }

    /// Captures every mutable artifact once. A periodic round that gets
    /// the lock after the final capture began does nothing, so no
    /// `ArtifactStored` follows the final one.
    /// Captures every mutable artifact once; returns the failures as
    /// `tag: error`.
    async fn capture_round(&self, key: &str, session: &Session, periodic: bool) -> Vec<String> {
        let Some(plan) = self.read_plan(key) else {
            return Vec::new();
        };
        let _round = session.round.lock().await;
        if periodic && session.stopped.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut failures = Vec::new();
        for planned in plan.captures.iter().filter(|planned| planned.mutable) {
            if let Err(error) = self.capture(key, session, planned).await {
                tracing::error!(key, tag = planned.tag, %error, "capture failed");
                failures.push(format!("{}: {error}", planned.tag));
            }
        }
        failures
    }

    /// Packs one artifact and stores it unless its last stored version has
    /// the same digest.
    async fn capture(&self, key: &str, session: &Session, planned: &Planned) -> Result<(), String> {
        let progress = session.begin(&planned.tag);
        let result = self.pack_and_store(key, planned, progress).await;
        session.end(&planned.tag);
        result
    }

    async fn pack_and_store(
        &self,
        key: &str,
        planned: &Planned,
        counters: Arc<Counters>,
    ) -> Result<(), String> {
        let source = planned.path.clone();
        let honour = planned.honour_ignore_file;
        let (fingerprint, bytes) =
            tokio::task::spawn_blocking(move || pack::fingerprint(&source, honour))
                .await
                .map_err(|error| error.to_string())?
                .map_err(|error| error.to_string())?;
        counters.to_read.store(bytes, Ordering::Relaxed);
        let cache_file = self
            .artifacts
            .fingerprints
            .join(format!("{fingerprint}.json"));

        if let Some(cached) = read_cached(&cache_file) {
            let _guard = self.artifacts.blob_locks.lock(&cached.digest).await;
            if self
                .artifacts
                .store
                .exists(&cached.digest)
                .await
                .unwrap_or(false)
            {
                return self.record(key, planned, cached).await;
            }
        }

        let source = planned.path.clone();
        let staging = self.artifacts.staging.clone();
        let read = counters.read.clone();
        let packed: Packed =
            tokio::task::spawn_blocking(move || pack::pack(&source, honour, &staging, &read))
                .await
                .map_err(|error| error.to_string())?
                .map_err(|error| error.to_string())?;
        let stored = StoredBlob {
            digest: packed.digest.clone(),
            size: packed.size,
            files: packed.files,
            file: packed.file.clone(),
        };
        counters.to_send.store(packed.size, Ordering::Relaxed);
        {
            let _guard = self.artifacts.blob_locks.lock(&packed.digest).await;
            let added = self
                .artifacts
                .store
                .put_counting(&packed.digest, &packed.temp_path, &counters.upload)
                .await
                .map_err(|error| error.to_string())?;
            tracing::debug!(
                key,
                tag = planned.tag,
                digest = stored.digest,
                added,
                "blob stored"
            );
            self.record(key, planned, stored.clone()).await?;
        }
        if let Err(error) = crate::supervisor::write_json_atomic(&cache_file, &stored, 0o600, false)
        {
            tracing::warn!(key, tag = planned.tag, %error, "cannot cache the artifact's fingerprint");
        }
        Ok(())
    }

    /// Appends `ArtifactStored` unless the tag's last version has the same
    /// digest. Called with the lock of the blob's digest held.
    async fn record(&self, key: &str, planned: &Planned, blob: StoredBlob) -> Result<(), String> {
        let unchanged = self
            .experiment(key)
            .and_then(|experiment| {
                experiment
                    .artifacts
                    .get(&planned.tag)
                    .map(|view| view.digest == blob.digest)
            })
            .unwrap_or(false);
        if unchanged {
            return Ok(());
        }
        let event = Event::ArtifactStored(ArtifactStored {
            tag: planned.tag.clone(),
            digest: blob.digest.clone(),
            size: blob.size,
            files: blob.files,
            mutable: planned.mutable,
            file: blob.file,
        });
        self.log
            .append(key, event)
            .await
            .map_err(|error| error.to_string())?;
        tracing::info!(
            key,
            tag = planned.tag,
            digest = blob.digest,
            size = blob.size,
            "artifact stored"
        );
        Ok(())
    }

    /// Unpacks a stored blob into the blob cache once and returns the path
    /// given to the script: the directory, or the file of a one-file artifact.
    /// The cached files are read only.
    async fn unpack_cached(&self, digest: &str, file: Option<&str>) -> Result<PathBuf, String> {
        let target = self.artifacts.blob_cache.join(digest);
        let fingerprint_file = self
            .artifacts
            .blob_cache
            .join(format!("{digest}.fingerprint"));
        if target.exists() && !cache_is_intact(&target, &fingerprint_file).await {
            // A script wrote into the read-only copy (root ignores the mode).
            // Later experiments must get the stored content, and one that
            // still uses the modified copy keeps it under another name.
            let aside = self.artifacts.blob_cache.join(format!(
                "{digest}.modified-{}",
                uuid::Uuid::new_v4().simple()
            ));
            tracing::warn!(digest, aside = %aside.display(), "cached copy of a blob was modified; unpacking it again");
            tokio::fs::rename(&target, &aside).await.map_err(|error| {
                format!(
                    "cannot move the modified cache {} aside: {error}",
                    target.display()
                )
            })?;
        }
        if !target.exists() {
            let temp = self
                .artifacts
                .staging
                .join(format!("get-{}.tar.gz", uuid::Uuid::new_v4().simple()));
            let result = self.fetch_to_file(digest, &temp).await;
            if let Err(error) = result {
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(error);
            }
            let unpack_target = target.clone();
            let unpack_temp = temp.clone();
            let fingerprint_path = fingerprint_file.clone();
            let unpacked = tokio::task::spawn_blocking(move || {
                let reader = std::fs::File::open(&unpack_temp)?;
                super::unpack::unpack(reader, &unpack_target).map_err(std::io::Error::other)?;
                make_read_only(&unpack_target);
                let (fingerprint, _) = super::pack::fingerprint(&unpack_target, false)
                    .map_err(std::io::Error::other)?;
                std::fs::write(&fingerprint_path, fingerprint)?;
                Ok::<_, std::io::Error>(())
            })
            .await
            .map_err(|error| error.to_string())?;
            let _ = tokio::fs::remove_file(&temp).await;
            if let Err(error) = unpacked {
                if !target.exists() {
                    return Err(format!("cannot unpack blob {digest}: {error}"));
                }
            }
        }
        Ok(match file {
            Some(name) => target.join(name),
            None => target,
        })
    }

    /// Copies a blob into a local file, verifying its digest.
    pub(crate) async fn fetch_to_file(
        &self,
        digest: &str,
        destination: &Path,
    ) -> Result<(), String> {
        let mut reader = self
            .artifacts
            .store
            .get(digest)
            .await
            .map_err(|error| error.to_string())?;
        let mut file = tokio::fs::File::create(destination)
            .await
            .map_err(|error| format!("cannot create {}: {error}", destination.display()))?;
        tokio::io::copy(&mut reader, &mut file)
            .await
            .map_err(|error| format!("cannot read blob {digest}: {error}"))?;
        file.flush().await.map_err(|error| error.to_string())?;
        Ok(())
    }
}

/// Packed result that the fingerprint cache keeps for a source.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredBlob {
    digest: String,
    size: u64,
    files: u64,
    file: Option<String>,
}

fn read_cached(path: &Path) -> Option<StoredBlob> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

impl Plan {
    fn add(&mut self, tag: &str, path: PathBuf, mutable: bool, honour_ignore_file: bool) {
        self.mapping.insert(tag.to_string(), path.clone());
        self.captures.push(Planned {
            tag: tag.to_string(),
            path,
            mutable,
            honour_ignore_file,
        });
    }
}

/// Builds the artifacts every experiment has unless a flag overrides the tag.
fn default_plan(experiment_dir: &Path, cwd: &Path) -> Plan {
    let mut plan = Plan::default();
    plan.add("workspace", cwd.to_path_buf(), false, true);
    plan.add("output", experiment_dir.join("output"), true, false);
    for tag in ["modeldir", "tb", "_metrics"] {
        plan.add(tag, experiment_dir.join(tag), true, false);
    }
    plan
}

/// Checks whether `uid` may read `path` by its owner and "other" permission bits.
///
/// NOTE: only the top path is checked (not group membership or files
/// below it), so a root daemon may still pack unreadable files inside a
/// readable directory.
fn readable_by(path: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    let mode = metadata.mode();
    if metadata.uid() == uid {
        return mode & 0o400 != 0;
    }
    mode & 0o004 != 0
}

/// Removes write permission from the files under `root`, so a script that
/// reuses an artifact cannot change the shared cached copy. Directories
/// stay writable so that `rm -rf` can still clear the cache.
/// True when the cached copy still has the fingerprint (names, sizes,
/// times, inodes) recorded when it was unpacked. A copy from before
/// fingerprints were recorded counts as intact.
async fn cache_is_intact(target: &Path, fingerprint_file: &Path) -> bool {
    let Ok(recorded) = tokio::fs::read_to_string(fingerprint_file).await else {
        return true;
    };
    let target = target.to_path_buf();
    let current =
        tokio::task::spawn_blocking(move || super::pack::fingerprint(&target, false)).await;
    matches!(current, Ok(Ok((fingerprint, _))) if fingerprint == recorded)
}

fn make_read_only(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|entry| entry.path()));
            }
        } else if metadata.is_file() {
            let mode = metadata.permissions().mode() & 0o555;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
        }
    }
}
