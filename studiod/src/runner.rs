//! Starting, watching, stopping and deleting experiments on this host.

use crate::api::ApiError;
use crate::daemon::Daemon;
use crate::events::{self, Created, EnvironmentRecorded, Event, Finished, Started};
use crate::process;
use crate::supervisor::{self, Exit, Running, Spec};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use studio_core::api::{Experiment, RunRequest, Status};

/// The user behind a request: from the Unix socket's peer credentials, or
/// the daemon's own user for the loopback HTTP port.
#[derive(Debug, Clone)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
}

impl Caller {
    pub fn from_uid(uid: u32, gid: Option<u32>) -> Self {
        let user = nix::unistd::User::from_uid(uid.into()).ok().flatten();
        Self {
            uid,
            gid: gid
                .or_else(|| user.as_ref().map(|user| user.gid.as_raw()))
                .unwrap_or(uid),
            name: user.map_or_else(|| uid.to_string(), |user| user.name),
        }
    }
}

impl Caller {
    /// User id of callers whose identity is unknown; matches no owner.
    pub const ANONYMOUS_UID: u32 = u32::MAX - 1;

    /// Makes the caller of an HTTP request without the dashboard token.
    pub fn anonymous() -> Self {
        Self {
            uid: Self::ANONYMOUS_UID,
            gid: Self::ANONYMOUS_UID,
            name: "anonymous".into(),
        }
    }
}

/// Maximum length of an experiment key.
const MAX_KEY_LENGTH: usize = 200;

impl Daemon {
    fn experiment_dir(&self, key: &str) -> PathBuf {
        self.paths.experiment_dir(key)
    }

    fn run_dir(&self, key: &str) -> PathBuf {
        self.experiment_dir(key).join("run")
    }

    pub fn output_path(&self, key: &str) -> PathBuf {
        self.experiment_dir(key).join("output")
    }

    /// Builds the `ExperimentCreated` event of a request, which records what
    /// the experiment is but never its environment.
    pub(crate) fn created_event(
        &self,
        request: &RunRequest,
        caller: &Caller,
        module: bool,
    ) -> Created {
        Created {
            project: request.project.clone(),
            owner: caller.name.clone(),
            owner_uid: Some(caller.uid),
            script: request.script.clone(),
            module,
            args: request.args.clone(),
            cwd: request.cwd.clone(),
            python: request.python.clone(),
            host: self.host.clone(),
            resources: request.resources.clone(),
            max_duration: request.max_duration,
            lifetime: request.lifetime,
            metric: request.metric.clone(),
            hyperparameters: request.hyperparameters.clone(),
        }
    }

    /// Returns the key asked for, checked and not yet used, or a generated
    /// one. Call it while holding `creating`, which keeps the key free
    /// until the experiment is created.
    pub(crate) fn new_key(&self, request: &RunRequest) -> Result<String, ApiError> {
        let key = match &request.experiment {
            Some(key) => {
                validate_key(key)?;
                key.clone()
            }
            None => generate_key(),
        };
        if let Some(existing) = self.experiment(&key) {
            return Err(ApiError::conflict(format!(
                "experiment {key} already exists (status {}): choose another --experiment, or delete it first with `studio runs kill {key}`",
                existing.status
            )));
        }
        Ok(key)
    }

    /// Creates an experiment from `request` and starts it now.
    pub async fn start_experiment(
        self: &Arc<Self>,
        request: RunRequest,
        caller: Caller,
    ) -> Result<Experiment, ApiError> {
        if caller.uid == Caller::ANONYMOUS_UID {
            return Err(ApiError::forbidden(
                "HTTP requests without the dashboard token may only read: send `Authorization: Bearer TOKEN` with the token in the address that `studio ui` prints, or use `studio run`",
            ));
        }
        if request.queue.as_deref() == Some("local") {
            return self.enqueue_single(request, caller).await;
        }
        let module = request.script.contains("::");
        validate_request(&request, module)?;
        self.check_artifact_requests(&request, &caller)?;

        let guard = self.creating.lock().await;
        let key = self.new_key(&request)?;
        let experiment_dir = self.experiment_dir(&key);
        if experiment_dir.exists() {
            tracing::warn!(key, dir = %experiment_dir.display(), "removing files left by a deleted experiment");
            std::fs::remove_dir_all(&experiment_dir).map_err(|error| {
                ApiError::internal(format!(
                    "cannot clear {}: {error}",
                    experiment_dir.display()
                ))
            })?;
        }

        let created = self.created_event(&request, &caller, module);
        self.log
            .append(&key, Event::ExperimentCreated(Box::new(created)))
            .await?;
        drop(guard);
        tracing::info!(
            key,
            owner = caller.name,
            script = request.script,
            "experiment created"
        );

        if request.lifetime.is_some_and(|lifetime| lifetime <= 0.0) {
            let finished = Finished {
                exit_code: None,
                signal: None,
                stopped: true,
                reason: Some("its --lifetime expired before it could start".into()),
                time: events::now(),
            };
            self.log
                .append(&key, Event::ExperimentFinished(finished))
                .await?;
            tracing::info!(key, "experiment skipped: lifetime expired");
            return self
                .experiment(&key)
                .ok_or_else(|| ApiError::not_found(&key));
        }

        match self.launch(&key, &request, &caller, module).await {
            Ok(()) => {}
            Err(reason) => {
                tracing::error!(key, error = %reason, "experiment failed to start");
                let finished = Finished {
                    exit_code: None,
                    signal: None,
                    stopped: false,
                    reason: Some(reason),
                    time: events::now(),
                };
                self.log
                    .append(&key, Event::ExperimentFinished(finished))
                    .await?;
            }
        }
        self.experiment(&key)
            .ok_or_else(|| ApiError::not_found(&key))
    }

    /// Prepares the experiment's directory, starts its supervisor and
    /// records the start. Errors are reasons to record on the experiment.
    pub(crate) async fn launch(
        self: &Arc<Self>,
        key: &str,
        request: &RunRequest,
        caller: &Caller,
        module: bool,
    ) -> Result<(), String> {
        let experiment_dir = self.experiment_dir(key);
        let run_dir = self.run_dir(key);
        let output = self.output_path(key);
        std::fs::create_dir_all(&run_dir)
            .map_err(|error| format!("cannot create {}: {error}", run_dir.display()))?;
        std::fs::File::create(&output)
            .map_err(|error| format!("cannot create {}: {error}", output.display()))?;
        let mut artifacts = self.prepare_artifacts(key, request).await?;
        artifacts.extend(request.extra_artifacts.clone());
        let mapping = experiment_dir.join("artifacts.json");
        supervisor::write_json_atomic(&mapping, &artifacts, 0o644, false)
            .map_err(|error| format!("cannot write {}: {error}", mapping.display()))?;

        let env = self.experiment_env(key, request, &mapping);
        let (program, args) = command_line(request, module);
        let run_as_user = self.uid == 0 && caller.uid != 0;
        let spec = Spec {
            key: key.to_string(),
            program,
            args,
            cwd: request.cwd.clone(),
            env: env.clone(),
            output,
            uid: run_as_user.then_some(caller.uid),
            gid: run_as_user.then_some(caller.gid),
            max_duration: request.max_duration,
            stop_grace: request.stop_grace.unwrap_or(self.config.stop_grace),
        };
        supervisor::write_json_atomic(&run_dir.join(supervisor::SPEC_FILE), &spec, 0o600, false)
            .map_err(|error| format!("cannot write the run spec: {error}"))?;
        if run_as_user {
            hand_over(&experiment_dir, caller);
        }

        let mut child = self.spawn_supervisor(&run_dir)?;
        let running = loop {
            if let Some(running) = supervisor::read_running(&run_dir) {
                break running;
            }
            if let Some(exit) = supervisor::read_exit(&run_dir) {
                let _ = child.wait().await;
                return Err(exit
                    .reason
                    .unwrap_or_else(|| "the script could not be started".into()));
            }
            if let Ok(Some(status)) = child.try_wait() {
                if supervisor::read_running(&run_dir).is_none()
                    && supervisor::read_exit(&run_dir).is_none()
                {
                    return Err(format!(
                        "the supervisor exited with {status} before starting the script; see {}",
                        run_dir.join("supervisor.log").display()
                    ));
                }
                continue;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };

        let started = Started {
            pid: running.pid,
            pid_start_time: running.pid_start_time,
            supervisor_pid: running.supervisor_pid,
            supervisor_start_time: running.supervisor_start_time,
        };
        self.log
            .append(key, Event::ExperimentStarted(started))
            .await
            .map_err(|error| error.to_string())?;
        tracing::info!(key, pid = running.pid, "experiment started");
        self.start_captures(key, running.pid);

        tokio::spawn(
            self.clone()
                .watch(key.to_string(), Some(child), Some(running)),
        );
        tokio::spawn(self.clone().follow_metrics(key.to_string()));
        tokio::spawn(self.clone().probe(
            key.to_string(),
            request.python.clone(),
            request.cwd.clone(),
            env,
        ));
        Ok(())
    }

    fn spawn_supervisor(&self, run_dir: &Path) -> Result<tokio::process::Child, String> {
        let log_path = run_dir.join("supervisor.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|error| format!("cannot create {}: {error}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|error| error.to_string())?;
        let mut command = tokio::process::Command::new(&self.executable);
        command
            .arg("supervise")
            .arg(run_dir)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // SAFETY: setsid is async-signal-safe. It detaches the supervisor
        // from studiod's session, so signals to the daemon's group (Ctrl-C
        // in a terminal, systemd stopping it) do not reach experiments.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        command.spawn().map_err(|error| {
            format!(
                "cannot start the supervisor {}: {error}",
                self.executable.display()
            )
        })
    }

    fn experiment_env(
        &self,
        key: &str,
        request: &RunRequest,
        mapping: &Path,
    ) -> BTreeMap<String, String> {
        let mut env = request.env.clone();
        for (name, value) in &self.config.env {
            env.insert(name.clone(), value.clone());
        }
        for (name, value) in &request.config_env {
            env.insert(name.clone(), value.clone());
        }
        env.insert("STUDIOML_EXPERIMENT".into(), key.into());
        env.insert(
            "STUDIOML_HOME".into(),
            self.paths.home.display().to_string(),
        );
        env.insert(
            "STUDIOML_ARTIFACT_MAPPING".into(),
            mapping.display().to_string(),
        );
        env.insert("PYTHONUNBUFFERED".into(), "1".into());
        let client = self.python_path.display().to_string();
        let python_path = match env.get("PYTHONPATH") {
            Some(existing) if !existing.is_empty() => format!("{client}:{existing}"),
            _ => client,
        };
        env.insert("PYTHONPATH".into(), python_path);
        if let Some(gpus) = request.resources.gpus {
            if gpus < 0 {
                env.insert("CUDA_VISIBLE_DEVICES".into(), "-1".into());
            }
        }
        env
    }

    /// Records the git state and Python environment of a started
    /// experiment, in one append.
    async fn probe(
        self: Arc<Self>,
        key: String,
        python: PathBuf,
        cwd: PathBuf,
        env: BTreeMap<String, String>,
    ) {
        let git = crate::probe::git_state(&cwd).await;
        let (python_version, pip_freeze) = self
            .environments
            .python_environment(&python, &cwd, &env)
            .await;
        let recorded = EnvironmentRecorded {
            python_version,
            pip_freeze,
        };
        let events = vec![
            (key.clone(), Event::GitRecorded { git }),
            (key.clone(), Event::EnvironmentRecorded(recorded)),
        ];
        if let Err(error) = self.log.append_all(events).await {
            tracing::error!(key, %error, "cannot record the git state and Python environment");
        }
    }

    /// Waits for the experiment to end and records how it ended. `child` is
    /// the supervisor when this daemon started it; adopted supervisors are
    /// polled through `/proc`.
    async fn watch(
        self: Arc<Self>,
        key: String,
        mut child: Option<tokio::process::Child>,
        running: Option<Running>,
    ) {
        let run_dir = self.run_dir(&key);
        loop {
            if let Some(exit) = supervisor::read_exit(&run_dir) {
                if let Some(child) = child.as_mut() {
                    let _ = child.wait().await;
                }
                self.record_exit(&key, exit).await;
                return;
            }
            if let Some(supervisor) = child.as_mut() {
                tokio::select! {
                    _ = supervisor.wait() => child = None,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let alive = running.as_ref().is_some_and(|running| {
                process::is_alive(running.supervisor_pid, running.supervisor_start_time)
                    || process::is_alive(running.pid, running.pid_start_time)
            });
            if !alive {
                if let Some(exit) = supervisor::read_exit(&run_dir) {
                    self.record_exit(&key, exit).await;
                } else {
                    self.record_interrupted(
                        &key,
                        "its process ended without recording an exit status",
                    )
                    .await;
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn record_exit(&self, key: &str, exit: Exit) {
        if self.status(key).is_none_or(|status| status.is_final()) {
            return;
        }
        self.final_capture(key).await;
        let finished = Finished {
            exit_code: exit.exit_code,
            signal: exit.signal,
            stopped: exit.stopped,
            reason: exit.reason,
            time: exit.time,
        };
        tracing::info!(
            key,
            exit_code = ?finished.exit_code,
            signal = ?finished.signal,
            stopped = finished.stopped,
            "experiment ended"
        );
        if let Err(error) = self
            .log
            .append(key, Event::ExperimentFinished(finished))
            .await
        {
            tracing::error!(key, %error, "cannot record the end of the experiment");
        }
    }

    async fn record_interrupted(&self, key: &str, reason: &str) {
        if self.status(key).is_none_or(|status| status.is_final()) {
            return;
        }
        self.final_capture(key).await;
        // A stop that was asked for is what ended the experiment, even when
        // its supervisor was gone and no exit status could be recorded.
        let stopped_by = self
            .experiment(key)
            .and_then(|experiment| experiment.stopped_by);
        let event = match stopped_by {
            Some(by) => {
                tracing::warn!(key, reason, "stopped experiment left no exit status");
                Event::ExperimentFinished(Finished {
                    exit_code: None,
                    signal: None,
                    stopped: true,
                    reason: Some(format!("stopped by {by}; {reason}")),
                    time: events::now(),
                })
            }
            None => {
                tracing::warn!(key, reason, "experiment interrupted");
                Event::ExperimentInterrupted {
                    reason: reason.into(),
                }
            }
        };
        if let Err(error) = self.log.append(key, event).await {
            tracing::error!(key, %error, "cannot record the interruption");
        }
    }

    /// Re-adopts the experiments that the log shows unfinished: those whose
    /// supervisor still runs are watched again, those that ended meanwhile
    /// get their recorded exit status, the rest are interrupted.
    pub async fn adopt_unfinished(self: &Arc<Self>) {
        let keys = self.read_projection().unfinished();
        // Running experiments first: those the queue started hold their
        // slots again before the queued ones can be scheduled.
        let (queued, started): (Vec<String>, Vec<String>) = keys
            .into_iter()
            .partition(|key| self.status(key) == Some(Status::Queued));
        for key in started {
            let run_dir = self.run_dir(&key);
            if let Some(exit) = supervisor::read_exit(&run_dir) {
                tracing::info!(key, "experiment ended while studiod was down");
                self.record_exit(&key, exit).await;
                continue;
            }
            match supervisor::read_running(&run_dir) {
                Some(running)
                    if process::is_alive(running.supervisor_pid, running.supervisor_start_time)
                        || process::is_alive(running.pid, running.pid_start_time) =>
                {
                    tracing::info!(key, pid = running.pid, "re-adopted a running experiment");
                    self.hold_slot_again(&key);
                    tokio::spawn(self.clone().follow_metrics(key.clone()));
                    tokio::spawn(self.clone().watch(key, None, Some(running)));
                }
                Some(_) => {
                    self.record_interrupted(
                        &key,
                        "its process ended while studiod was down and left no exit status",
                    )
                    .await
                }
                None => {
                    self.record_interrupted(&key, "studiod stopped before the experiment started")
                        .await
                }
            }
        }
        for key in queued {
            if !self.requeue(&key).await {
                self.record_interrupted(&key, "its queue entry could not be read back")
                    .await;
            }
        }
    }

    /// Asks a running experiment to stop; returns at once. The supervisor
    /// sends SIGTERM to the script's process group and SIGKILL after the
    /// grace period.
    pub async fn stop_experiment(
        &self,
        key: &str,
        caller: &Caller,
    ) -> Result<Experiment, ApiError> {
        let experiment = self
            .experiment(key)
            .ok_or_else(|| ApiError::not_found(key))?;
        self.check_permission(&experiment, caller, "stop")?;
        if experiment.status.is_final() {
            return Ok(experiment);
        }
        self.log
            .append(
                key,
                Event::StopRequested {
                    by: caller.name.clone(),
                },
            )
            .await?;
        tracing::info!(key, by = caller.name, "stop requested");

        let run_dir = self.run_dir(key);
        let signalled = match supervisor::read_running(&run_dir) {
            Some(running)
                if process::is_alive(running.supervisor_pid, running.supervisor_start_time) =>
            {
                send_signal(
                    running.supervisor_pid,
                    nix::sys::signal::Signal::SIGTERM,
                    false,
                )
            }
            Some(running) if process::is_alive(running.pid, running.pid_start_time) => {
                send_signal(running.pid, nix::sys::signal::Signal::SIGTERM, true)
            }
            _ => false,
        };
        if !signalled && supervisor::read_exit(&run_dir).is_none() {
            let finished = Finished {
                exit_code: None,
                signal: None,
                stopped: true,
                reason: Some(format!("stopped by {} before it started", caller.name)),
                time: events::now(),
            };
            self.log
                .append(key, Event::ExperimentFinished(finished))
                .await?;
        }
        self.experiment(key).ok_or_else(|| ApiError::not_found(key))
    }

    /// Stops the experiment if it runs, waits for it to end, then deletes its
    /// record and its files.
    pub async fn delete_experiment(&self, key: &str, caller: &Caller) -> Result<(), ApiError> {
        let experiment = self
            .experiment(key)
            .ok_or_else(|| ApiError::not_found(key))?;
        self.check_permission(&experiment, caller, "delete")?;
        if !experiment.status.is_final() {
            let mut receiver = self.events.subscribe();
            self.stop_experiment(key, caller).await?;
            let grace = self.config.stop_grace + 10.0;
            let deadline = tokio::time::Instant::now()
                + Duration::try_from_secs_f64(grace).unwrap_or(Duration::from_secs(3600));
            while self.status(key).is_some_and(|status| !status.is_final()) {
                if tokio::time::timeout_at(deadline, receiver.recv())
                    .await
                    .is_err()
                {
                    return Err(ApiError::conflict(format!(
                        "experiment {key} did not stop within {grace}s; try again, or kill its process group (pid {})",
                        experiment.pid.map_or("unknown".into(), |pid| pid.to_string())
                    )));
                }
            }
        }
        let digests = self.read_projection().blobs.digests_of(key);
        self.log
            .append(
                key,
                Event::ExperimentDeleted {
                    by: caller.name.clone(),
                },
            )
            .await?;
        tracing::info!(key, by = caller.name, "experiment deleted");
        self.free_blobs(key, digests).await;
        let directory = self.experiment_dir(key);
        let removed =
            tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&directory)).await;
        if let Ok(Err(error)) = removed {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(key, %error, "cannot remove the experiment's files");
            }
        }
        Ok(())
    }

    /// Sets or removes tags; an empty value removes the tag.
    pub async fn tag_experiment(
        &self,
        key: &str,
        tags: BTreeMap<String, String>,
        caller: &Caller,
    ) -> Result<Experiment, ApiError> {
        let experiment = self
            .experiment(key)
            .ok_or_else(|| ApiError::not_found(key))?;
        self.check_permission(&experiment, caller, "tag")?;
        for (name, value) in &tags {
            if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
                return Err(ApiError::bad_request(format!(
                    "invalid tag name {name:?}: use 1 to 200 characters, without control characters"
                )));
            }
            if value.len() > MAX_TAG_VALUE_LENGTH || value.chars().any(char::is_control) {
                return Err(ApiError::bad_request(format!(
                    "invalid value of tag {name:?}: use at most {MAX_TAG_VALUE_LENGTH} bytes, without control characters such as newlines"
                )));
            }
        }
        self.log.append(key, Event::TagsChanged { tags }).await?;
        self.experiment(key).ok_or_else(|| ApiError::not_found(key))
    }

    fn check_permission(
        &self,
        experiment: &Experiment,
        caller: &Caller,
        action: &str,
    ) -> Result<(), ApiError> {
        let allowed = caller.uid == 0
            || caller.uid == self.uid
            || experiment.owner_uid.is_none_or(|owner| owner == caller.uid);
        if allowed {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{} may not {action} experiment {}, which belongs to {}",
                caller.name, experiment.key, experiment.owner
            )))
        }
    }
}

/// Maximum length of a tag value, in bytes: room for a note, not a file.
const MAX_TAG_VALUE_LENGTH: usize = 4096;

/// Maximum length of a project name, in bytes.
const MAX_PROJECT_LENGTH: usize = 200;

pub(crate) fn validate_request(request: &RunRequest, module: bool) -> Result<(), ApiError> {
    if request.script.is_empty() {
        return Err(ApiError::bad_request(
            "no script given: pass a .py file or package::module",
        ));
    }
    if let Some(project) = &request.project {
        if project.trim().is_empty()
            || project.len() > MAX_PROJECT_LENGTH
            || project.chars().any(char::is_control)
        {
            return Err(ApiError::bad_request(format!(
                "invalid --project {project:?}: use 1 to {MAX_PROJECT_LENGTH} bytes, without control characters"
            )));
        }
    }
    if !request.cwd.is_dir() {
        return Err(ApiError::bad_request(format!(
            "working directory {} does not exist or is not a directory",
            request.cwd.display()
        )));
    }
    if module {
        let valid = request.script.split("::").all(|part| {
            !part.is_empty()
                && part.split('.').all(|name| {
                    !name.is_empty()
                        && !name.starts_with(|character: char| character.is_ascii_digit())
                        && name
                            .chars()
                            .all(|character| character.is_alphanumeric() || character == '_')
                })
        });
        if !valid {
            return Err(ApiError::bad_request(format!(
                "invalid module {:?}: name it as package::module, as in mypkg::train",
                request.script
            )));
        }
    }
    if !module && !request.cwd.join(&request.script).is_file() {
        return Err(ApiError::bad_request(format!(
            "script {} not found in {}: check the path",
            request.script,
            request.cwd.display()
        )));
    }
    if request.python.as_os_str().is_empty() || !request.python.is_file() {
        return Err(ApiError::bad_request(format!(
            "Python interpreter {:?} not found: install python3 or put it on PATH",
            request.python.display().to_string()
        )));
    }
    request
        .resources
        .validate()
        .map_err(|error| ApiError::bad_request(format!("invalid resources: {error}")))?;
    let limit = studio_core::duration::MAX_SECONDS;
    for (flag, value) in [
        ("--max-duration", request.max_duration),
        ("--stop-grace", request.stop_grace),
    ] {
        if value.is_some_and(|seconds| !seconds.is_finite() || seconds.abs() > limit) {
            return Err(ApiError::bad_request(format!(
                "invalid {flag} {}s: it must be a finite number of seconds up to 100 years",
                value.unwrap_or_default()
            )));
        }
    }
    if let Some(seconds) = request.stop_grace.filter(|seconds| *seconds < 0.0) {
        return Err(ApiError::bad_request(format!(
            "invalid --stop-grace {seconds}s: it must be 0 or more seconds"
        )));
    }
    if let Some(seconds) = request.max_duration {
        if seconds <= 0.0 {
            return Err(ApiError::bad_request(format!(
                "invalid --max-duration {seconds}s: it must be more than 0"
            )));
        }
    }
    Ok(())
}

/// Checks that a key can name a directory: letters, digits, `.`, `_`, `-`.
pub fn validate_key(key: &str) -> Result<(), ApiError> {
    let valid = !key.is_empty()
        && key.len() <= MAX_KEY_LENGTH
        && !key.starts_with('.')
        && key.chars().all(|character| {
            character.is_ascii_alphanumeric() || matches!(character, '.' | '_' | '-')
        });
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid experiment key {key:?}: use 1 to {MAX_KEY_LENGTH} letters, digits, '.', '_' or '-', not starting with '.'"
        )))
    }
}

/// Makes a key such as `1733350000_3f2a9c1e`: the Unix time, then random hex.
pub(crate) fn generate_key() -> String {
    let seconds = events::now() as u64;
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{seconds}_{}", &random[..8])
}

fn command_line(request: &RunRequest, module: bool) -> (PathBuf, Vec<String>) {
    let mut args = Vec::with_capacity(request.args.len() + 2);
    if module {
        args.push("-m".to_string());
        args.push(request.script.replace("::", "."));
    } else {
        args.push(request.script.clone());
    }
    args.extend(request.args.iter().cloned());
    (request.python.clone(), args)
}

/// Gives the experiment's directory to the submitting user when studiod runs
/// as root, so the script can write its output and artifacts.
fn hand_over(directory: &Path, caller: &Caller) {
    let owner = Some(nix::unistd::Uid::from_raw(caller.uid));
    let group = Some(nix::unistd::Gid::from_raw(caller.gid));
    let mut pending = vec![directory.to_path_buf()];
    while let Some(path) = pending.pop() {
        if path.ends_with("run") {
            continue;
        }
        if let Err(error) = nix::unistd::chown(&path, owner, group) {
            tracing::warn!(path = %path.display(), %error, "cannot hand the path over to the submitting user");
        }
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|entry| entry.path()));
            }
        }
    }
    let _ = std::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o755));
}

/// Sends `signal` to `pid`, or to its process group when `group` is set;
/// returns whether it was delivered.
fn send_signal(pid: u32, signal: nix::sys::signal::Signal, group: bool) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    let target = nix::unistd::Pid::from_raw(raw);
    let result = if group {
        nix::sys::signal::killpg(target, signal)
    } else {
        nix::sys::signal::kill(target, signal)
    };
    match result {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(pid, %signal, %error, "cannot send the signal");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        for key in ["linear_regression", "1733350000_3f2a9c1e", "a.b-c"] {
            assert!(validate_key(key).is_ok(), "{key}");
        }
        for key in ["", "a/b", "..", ".hidden", "white space", &"x".repeat(201)] {
            assert!(validate_key(key).is_err(), "{key}");
        }
    }

    #[test]
    fn generated_keys_are_valid() {
        let key = generate_key();
        assert!(validate_key(&key).is_ok());
        assert_ne!(key, generate_key());
    }

    #[test]
    fn module_scripts_use_dash_m() {
        let request = RunRequest {
            script: "pkg::sub.mod".into(),
            args: vec!["--x".into()],
            python: "/usr/bin/python3".into(),
            ..Default::default()
        };
        let (program, args) = command_line(&request, true);
        assert_eq!(program, PathBuf::from("/usr/bin/python3"));
        assert_eq!(args, ["-m", "pkg.sub.mod", "--x"]);
    }
}
