//! Facts about an experiment's environment, collected after it has started
//! so they never delay the script: the Python version, `pip freeze`, and
//! the git state of its directory.

use std::collections::BTreeMap;
use std::path::Path;
use studio_core::api::{strip_credentials, GitInfo};
use tokio::process::Command;

/// Runs `python --version` and `python -m pip freeze` with the experiment's
/// environment. A failure leaves the field empty: a Python without pip is
/// not an error.
pub async fn python_environment(
    python: &Path,
    cwd: &Path,
    env: &BTreeMap<String, String>,
) -> (Option<String>, Vec<String>) {
    let version = run(
        python,
        &["-c", "import platform; print(platform.python_version())"],
        cwd,
        env,
    )
    .await
    .map(|text| text.trim().to_string())
    .filter(|text| !text.is_empty());
    let freeze = run(
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
    (version, freeze)
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
    let output = Command::new(program)
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
