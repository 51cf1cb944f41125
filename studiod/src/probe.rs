//! Facts about an experiment's environment, collected after it has started
//! so they never delay the script: the Python version, `pip freeze`, and
//! the git state of its directory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;
use studio_core::api::{strip_credentials, GitInfo};
use tokio::process::Command;

/// Python environments already frozen, by interpreter. An entry is reused
/// while the modification times of its site-packages directories are
/// unchanged (pip adds or removes a directory there for every install), so
/// a run of many experiments pays for `pip freeze` once.
#[derive(Default)]
pub struct EnvironmentCache {
    entries: Mutex<HashMap<PathBuf, CachedEnvironment>>,
}

#[derive(Clone)]
struct CachedEnvironment {
    fingerprint: Vec<(PathBuf, Option<SystemTime>)>,
    version: Option<String>,
    freeze: Vec<String>,
}

/// Prints the Python version and the site-packages directories on sys.path.
const DESCRIBE_PYTHON: &str = "import json, platform, sys; print(json.dumps([platform.python_version(), [p for p in sys.path if p.endswith(('site-packages', 'dist-packages'))]]))";

impl EnvironmentCache {
    /// Returns the Python version and `pip freeze` of the experiment's
    /// interpreter, run with its environment. A failure leaves the field
    /// empty: a Python without pip is not an error.
    pub async fn python_environment(
        &self,
        python: &Path,
        cwd: &Path,
        env: &BTreeMap<String, String>,
    ) -> (Option<String>, Vec<String>) {
        let description = run(python, &["-c", DESCRIBE_PYTHON], cwd, env).await;
        let parsed: Option<(String, Vec<PathBuf>)> =
            description.and_then(|text| serde_json::from_str(text.trim()).ok());
        let Some((version, directories)) = parsed else {
            return (None, Vec::new());
        };
        let fingerprint: Vec<_> = directories
            .into_iter()
            .map(|directory| {
                let modified = std::fs::metadata(&directory)
                    .and_then(|metadata| metadata.modified())
                    .ok();
                (directory, modified)
            })
            .collect();
        let cached = self.lock().get(python).cloned();
        if let Some(cached) = cached.filter(|cached| cached.fingerprint == fingerprint) {
            return (cached.version, cached.freeze);
        }

        let freeze: Vec<String> = run(
            python,
            &["-m", "pip", "freeze", "--disable-pip-version-check"],
            cwd,
            env,
        )
        .await
        .map(|text| {
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
        let version = Some(version);
        if !freeze.is_empty() {
            let entry = CachedEnvironment {
                fingerprint,
                version: version.clone(),
                freeze: freeze.clone(),
            };
            self.lock().insert(python.to_path_buf(), entry);
        }
        (version, freeze)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, CachedEnvironment>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Reads the commit, branch, `origin` URL (without credentials) and dirty
/// flag of the git work tree that contains `cwd`; `None` outside git.
pub async fn git_state(cwd: &Path) -> Option<GitInfo> {
    let git = |arguments: &'static [&'static str]| async move {
        let mut command = Command::new("git");
        command
            .arg("-c")
            .arg("safe.directory=*")
            .arg("-C")
            .arg(cwd)
            .args(arguments);
        let output = command.output().await.ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).await?;
    let branch = git(&["rev-parse", "--abbrev-ref", "HEAD"])
        .await
        .filter(|branch| branch != "HEAD");
    let url = git(&["remote", "get-url", "origin"])
        .await
        .map(|url| strip_credentials(&url));
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .await
        .is_some_and(|changes| !changes.is_empty());
    Some(GitInfo {
        url,
        commit,
        branch,
        dirty,
    })
}

async fn run(
    program: &Path,
    arguments: &[&str],
    cwd: &Path,
    env: &BTreeMap<String, String>,
) -> Option<String> {
    let mut command = Command::new(program);
    // SAFETY: setpriority is async-signal-safe. Probes run beside the
    // experiment and must not take CPU time from it.
    unsafe {
        command.pre_exec(|| {
            nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, 10);
            Ok(())
        });
    }
    let output = command
        .args(arguments)
        .current_dir(cwd)
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}
