//! Start-up and shared state of studiod.

use crate::events::Envelope;
use crate::projection::Projection;
use crate::store::{CommitHook, EventLog};
use anyhow::{bail, Context};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use studio_core::config::{Config, LoadedConfig};
use studio_core::paths::StudioPaths;
use tokio::sync::{broadcast, Mutex, Notify};

mod python_client {
    include!(concat!(env!("OUT_DIR"), "/python_client.rs"));
}

/// Options studiod runs with.
#[derive(Debug, Clone)]
pub struct Options {
    pub paths: StudioPaths,
    pub config_file: Option<PathBuf>,
    /// Overrides `server.http` of the config; `off` disables HTTP.
    pub http: Option<String>,
    /// Mode of the Unix socket: 0600 for a personal daemon, 0666 for one
    /// shared by the users of a host (distinguished by their peer
    /// credentials).
    pub socket_mode: u32,
}

/// State shared by the API handlers, the runner and the watchers.
pub struct Daemon {
    pub paths: StudioPaths,
    pub config: Config,
    pub log: EventLog,
    pub projection: Arc<RwLock<Projection>>,
    /// Every committed event, for live streams.
    pub events: broadcast::Sender<Arc<Envelope>>,
    pub host: String,
    /// Binary that is re-executed as `studiod supervise`.
    pub executable: PathBuf,
    pub started_at: f64,
    pub http_address: OnceLock<String>,
    /// Reason that the HTTP port could not be opened.
    pub http_error: OnceLock<String>,
    pub shutdown: Notify,
    /// Serialises the check-then-create of experiment keys.
    pub(crate) creating: Mutex<()>,
    pub(crate) python_path: PathBuf,
    pub(crate) uid: u32,
    pub(crate) environments: crate::probe::EnvironmentCache,
    pub artifacts: crate::artifacts::Artifacts,
    /// The local queue's pending experiments and worker slots.
    pub queue: crate::queue::LocalQueue,
    /// Hyperparameter searches started since the daemon started.
    pub searches: crate::search::Searches,
}

impl Daemon {
    /// Reads one experiment from the projection.
    pub fn experiment(&self, key: &str) -> Option<studio_core::api::Experiment> {
        self.read_projection().get(key).cloned()
    }

    /// Reads one experiment's status without copying its record, for the
    /// loops that poll it.
    pub fn status(&self, key: &str) -> Option<studio_core::api::Status> {
        self.read_projection()
            .get(key)
            .map(|experiment| experiment.status)
    }

    pub fn read_projection(&self) -> std::sync::RwLockReadGuard<'_, Projection> {
        self.projection
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Opens the home, the event log and the sockets, re-adopts running
/// experiments, and serves until SIGTERM, SIGINT or a shutdown request.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let paths = options.paths.clone();
    create_private_dir(&paths.home)?;
    let _lock = lock_home(&paths)?;

    let loaded = load_config(&paths, options.config_file.as_deref())?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let config = loaded.config;

    let projection = Arc::new(RwLock::new(Projection::default()));
    let (events, _) = broadcast::channel(4096);
    let hook: CommitHook = {
        let projection = projection.clone();
        let events = events.clone();
        Arc::new(move |batch: &[Envelope]| {
            let mut state = projection
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for envelope in batch {
                state.apply(envelope);
            }
            drop(state);
            for envelope in batch {
                let _ = events.send(Arc::new(envelope.clone()));
            }
        })
    };
    let (log, replay) = EventLog::open(&paths.database(), hook)?;
    {
        let mut state = projection
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for envelope in &replay.envelopes {
            state.apply(envelope);
        }
        tracing::info!(
            events = replay.envelopes.len(),
            skipped = replay.undecodable,
            experiments = state.len(),
            "replayed the event log"
        );
    }
    // The decoded events are in the projection now; keeping them would
    // double the daemon's memory for its whole life.
    drop(replay);

    let python_path = install_python_client(&paths)?;
    let artifacts = crate::artifacts::Artifacts::open(&paths, &config.storage).await?;
    let daemon = Arc::new(Daemon {
        paths: paths.clone(),
        config,
        log,
        projection,
        events,
        host: hostname(),
        executable: std::env::current_exe().context("cannot find the studiod executable")?,
        started_at: crate::events::now(),
        http_address: OnceLock::new(),
        http_error: OnceLock::new(),
        shutdown: Notify::new(),
        creating: Mutex::new(()),
        python_path,
        uid: nix::unistd::geteuid().as_raw(),
        environments: crate::probe::EnvironmentCache::default(),
        artifacts,
        queue: Default::default(),
        searches: Default::default(),
    });

    let unix = crate::server::bind_unix(&paths.socket, options.socket_mode)?;
    let http_setting = options
        .http
        .clone()
        .unwrap_or_else(|| daemon.config.server.http.clone());
    let tcp = match crate::server::bind_tcp(&http_setting).await {
        Ok(listener) => listener,
        Err(reason) => {
            tracing::warn!("{reason}; serving the Unix socket only");
            let _ = daemon.http_error.set(reason);
            None
        }
    };
    if let Some(listener) = &tcp {
        if let Ok(address) = listener.local_addr() {
            let _ = daemon.http_address.set(address.to_string());
        }
    }

    daemon.adopt_unfinished().await;
    tracing::info!(
        pid = std::process::id(),
        socket = %paths.socket.display(),
        http = daemon.http_address.get().map_or("off", String::as_str),
        home = %paths.home.display(),
        "studiod started"
    );

    crate::server::serve(daemon.clone(), unix, tcp).await;

    let _ = std::fs::remove_file(&paths.socket);
    tracing::info!(
        "studiod stopped; running experiments go on and are re-adopted at the next start"
    );
    Ok(())
}

fn load_config(paths: &StudioPaths, explicit: Option<&Path>) -> anyhow::Result<LoadedConfig> {
    Ok(Config::load(explicit, &paths.config_file(), |name| {
        std::env::var(name).ok()
    })?)
}

fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    }
    Ok(())
}

/// Takes the home's lock so that one daemon at a time owns it.
fn lock_home(paths: &StudioPaths) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    use std::io::{Read, Seek, Write};
    let path = paths.lock_file();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut lock = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
    {
        Ok(lock) => lock,
        Err((mut file, _)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            bail!(
                "another studiod (pid {}) already uses {}: stop it with `studio daemon stop`, or set STUDIOML_HOME to another directory",
                holder.trim(),
                paths.home.display()
            );
        }
    };
    lock.set_len(0)?;
    lock.rewind()?;
    write!(lock, "{}", std::process::id())?;
    Ok(lock)
}

/// Writes the embedded Python client under the home and returns the
/// directory to put on `PYTHONPATH`.
fn install_python_client(paths: &StudioPaths) -> anyhow::Result<PathBuf> {
    let root = paths.python_client();
    for (relative, contents) in python_client::FILES {
        let target = root.join("studio").join(relative);
        if std::fs::read_to_string(&target).is_ok_and(|existing| existing == *contents) {
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, contents)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(root)
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}
