//! Fixtures for tests that run the real `studio` and `studiod` binaries.
//!
//! Each [`Studio`] owns a temporary HOME and Studio home, so tests run in
//! parallel without sharing a daemon. The daemon listens on its own Unix
//! socket and on an ephemeral loopback HTTP port. The binaries must be built
//! first (`cargo build --workspace`), which the test command does.

pub mod services;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Maximum time any condition is waited for before a test fails.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Directory holding the built binaries (`target/debug`).
pub fn binary_dir() -> PathBuf {
    let executable = std::env::current_exe().expect("test executable path");
    let deps = executable.parent().expect("deps directory");
    let profile = deps.parent().expect("profile directory").to_path_buf();
    for name in ["studio", "studiod"] {
        assert!(
            profile.join(name).exists(),
            "{} is missing: build the binaries with `cargo build --workspace` before the tests",
            profile.join(name).display()
        );
    }
    profile
}

/// Path of a built binary: `studio` or `studiod`.
pub fn binary(name: &str) -> PathBuf {
    binary_dir().join(name)
}

/// Root of the repository (for examples and fixtures).
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// A private Studio installation: HOME, Studio home, and a work directory
/// for scripts.
pub struct Studio {
    root: tempfile::TempDir,
    extra_env: Vec<(String, String)>,
    removed_env: Vec<String>,
}

impl Default for Studio {
    fn default() -> Self {
        Self::new()
    }
}

impl Studio {
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("studio-test-")
            .tempdir()
            .expect("temporary directory");
        std::fs::create_dir_all(root.path().join("home")).expect("home");
        std::fs::create_dir_all(root.path().join("work")).expect("work");
        Self {
            root,
            extra_env: Vec::new(),
            removed_env: Vec::new(),
        }
    }

    /// Adds an environment variable to every command.
    pub fn env(&mut self, name: &str, value: &str) -> &mut Self {
        self.extra_env.push((name.into(), value.into()));
        self
    }

    /// Removes an environment variable of the test process from every
    /// command.
    pub fn env_remove(&mut self, name: &str) -> &mut Self {
        self.removed_env.push(name.into());
        self
    }

    /// Returns the user's HOME.
    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// Returns the Studio home (`~/.studioml`).
    pub fn studio_home(&self) -> PathBuf {
        self.home().join(".studioml")
    }

    /// Directory the commands run in; tests put their scripts here.
    pub fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    /// Writes a file under the work directory and returns its path.
    pub fn write(&self, relative: &str, contents: &str) -> PathBuf {
        let path = self.work().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("parent directory");
        }
        std::fs::write(&path, contents).expect("write file");
        path
    }

    /// Builds a command with this installation's environment.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(binary(program));
        command
            .current_dir(self.work())
            .env("HOME", self.home())
            .env_remove("STUDIOML_HOME")
            .env_remove("STUDIOML_SOCKET")
            .env_remove("XDG_RUNTIME_DIR")
            .env("STUDIOML_HTTP", "127.0.0.1:0")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null());
        for name in &self.removed_env {
            command.env_remove(name);
        }
        for (name, value) in &self.extra_env {
            command.env(name, value);
        }
        command
    }

    /// Runs `studio ARGS` to completion.
    pub fn studio(&self, args: &[&str]) -> Output {
        self.command("studio")
            .args(args)
            .output()
            .expect("run studio")
    }

    /// Runs `studio ARGS`, fails the test unless it exits 0, and returns its
    /// standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.studio(args);
        assert!(
            output.status.success(),
            "studio {args:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    /// Starts `studio run --detach ARGS` and returns the experiment's key.
    pub fn detach(&self, args: &[&str]) -> String {
        let mut full = vec!["run", "--detach"];
        full.extend_from_slice(args);
        self.ok(&full).trim().to_string()
    }

    /// Returns the experiment's record as JSON (`studio runs show --json`).
    pub fn experiment(&self, key: &str) -> Value {
        let text = self.ok(&["runs", "show", key, "--json"]);
        serde_json::from_str(&text).expect("experiment JSON")
    }

    /// Waits until the experiment's status is `status`.
    pub fn wait_for_status(&self, key: &str, status: &str) -> Value {
        let mut last = Value::Null;
        wait_until(&format!("experiment {key} to be {status}"), || {
            last = self.experiment(key);
            last["status"] == status
        });
        last
    }

    /// Pid of the running daemon, from its lock file.
    pub fn daemon_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.studio_home().join("studiod.lock")).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        is_running(pid).then_some(pid)
    }

    /// Address of the daemon's HTTP port, as `127.0.0.1:PORT`.
    pub fn http_address(&self) -> String {
        let text = self.ok(&["ui"]);
        let url = text.trim().trim_start_matches("http://");
        url.split('/').next().unwrap_or(url).to_string()
    }

    /// Returns the dashboard token from the address that `studio ui`
    /// prints. HTTP requests that send it act as the daemon's user.
    pub fn dashboard_token(&self) -> String {
        let url = self.ok(&["ui"]);
        let (_, token) = url
            .trim()
            .split_once("#token=")
            .expect("token in the address of `studio ui`");
        token.to_string()
    }
}

impl Drop for Studio {
    fn drop(&mut self) {
        let pid = self.daemon_pid();
        let _ = self
            .command("studio")
            .args(["daemon", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(pid) = pid {
            kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        kill_experiments(&self.studio_home());
    }
}

/// Kills every experiment's process group still running under `home`, so a
/// failed test leaves no processes behind.
fn kill_experiments(home: &Path) {
    let Ok(entries) = std::fs::read_dir(home.join("experiments")) else {
        return;
    };
    for entry in entries.flatten() {
        let running = entry.path().join("run").join("supervisor.json");
        let Ok(text) = std::fs::read_to_string(running) else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if let Some(pid) = value["pid"].as_i64() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(pid) = value["supervisor_pid"].as_u64() {
            kill(pid as u32, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// True when `pid` exists and is not a zombie (this sandbox's init may
/// leave exited processes unreaped).
pub fn is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("Z");
    !matches!(state, "Z" | "X")
}

/// Sends `signal` to `pid`, ignoring a process that is already gone.
pub fn kill(pid: u32, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
}

/// Polls `condition` every 50 ms until it holds; fails the test after
/// [`TIMEOUT`], naming `what` was awaited.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < TIMEOUT,
            "timed out after {TIMEOUT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Text of a command's standard error.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Text of a command's standard output.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Sends one HTTP/1.1 request to `address` and returns the status code and
/// body. `headers` are added as given; `Host` defaults to the address.
pub fn http(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to studiod");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request.push_str(&format!("Host: {address}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}
