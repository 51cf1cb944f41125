//! The per-experiment supervisor: `studiod supervise <run dir>`.
//!
//! studiod starts one supervisor per experiment in a new session. The
//! supervisor starts the script in its own process group with stdout and
//! stderr on the experiment's output file, waits for it, and writes its exit
//! status to `exit.json`. It does not depend on studiod staying up, so an
//! experiment survives a restart or crash of the daemon, which re-adopts it
//! on start (pid plus process start time in `supervisor.json`).
//!
//! SIGTERM, SIGINT or SIGHUP to the supervisor stop the experiment: SIGTERM
//! to its process group, then SIGKILL after the grace period. The same
//! happens when `max_duration` passes, and to the processes that the script
//! leaves in its group when it exits (data loader workers, servers), so
//! none of them outlives the experiment. A process that left the group
//! (`setsid`, `setpgid`) is not ended.

use crate::process;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// What to run; written by studiod with mode 0600 because `env` may hold
/// secrets, and deleted by the supervisor as soon as it has read it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub key: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    pub output: PathBuf,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub max_duration: Option<f64>,
    pub stop_grace: f64,
}

/// Written by the supervisor once the script has started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Running {
    pub supervisor_pid: u32,
    pub supervisor_start_time: Option<u64>,
    pub pid: u32,
    pub pid_start_time: Option<u64>,
}

/// Written by the supervisor when the script has ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exit {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stopped: bool,
    pub reason: Option<String>,
    /// Seconds since the epoch.
    pub time: f64,
}

pub const SPEC_FILE: &str = "spec.json";
pub const RUNNING_FILE: &str = "supervisor.json";
pub const EXIT_FILE: &str = "exit.json";

pub fn read_running(run_dir: &Path) -> Option<Running> {
    read_json(&run_dir.join(RUNNING_FILE))
}

pub fn read_exit(run_dir: &Path) -> Option<Exit> {
    read_json(&run_dir.join(EXIT_FILE))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes `value` to `path` through a temporary file and a rename, so a
/// reader never sees half a file.
pub fn write_json_atomic<T: Serialize>(
    path: &Path,
    value: &T,
    mode: u32,
    durable: bool,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)?;
    file.write_all(&serde_json::to_vec_pretty(value)?)?;
    if durable {
        file.sync_all()?;
    }
    fs::rename(&temporary, path)
}

/// Entry point of `studiod supervise <run dir>`; returns the process's exit
/// code.
pub fn main(run_dir: &Path) -> i32 {
    let spec: Spec = match fs::read(run_dir.join(SPEC_FILE))
        .map_err(|error| error.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|error| error.to_string()))
    {
        Ok(spec) => spec,
        Err(error) => {
            eprintln!(
                "studiod supervise: cannot read {}: {error}",
                run_dir.join(SPEC_FILE).display()
            );
            return 2;
        }
    };
    // The spec contains the user's environment, secrets included. Nothing
    // reads it after this point, so it does not stay on disk.
    if let Err(error) = fs::remove_file(run_dir.join(SPEC_FILE)) {
        eprintln!("studiod supervise: cannot remove {SPEC_FILE}: {error}");
    }

    let stop_signal = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        if let Err(error) = signal_hook::flag::register(signal, stop_signal.clone()) {
            eprintln!("studiod supervise: cannot handle signal {signal}: {error}");
        }
    }

    let exit = supervise(&spec, run_dir, &stop_signal);
    if let Err(error) = write_json_atomic(&run_dir.join(EXIT_FILE), &exit, 0o644, true) {
        eprintln!("studiod supervise: cannot write the exit status: {error}");
        return 1;
    }
    0
}

fn supervise(spec: &Spec, run_dir: &Path, stop_signal: &AtomicBool) -> Exit {
    let failed_to_start = |reason: String| Exit {
        exit_code: None,
        signal: None,
        stopped: false,
        reason: Some(reason),
        time: crate::events::now(),
    };
    let output = match open_output(&spec.output) {
        Ok(file) => file,
        Err(error) => {
            return failed_to_start(format!(
                "cannot open the output file {}: {error}",
                spec.output.display()
            ))
        }
    };
    let mut child = match command(spec, output).spawn() {
        Ok(child) => child,
        Err(error) => {
            return failed_to_start(format!("cannot start {}: {error}", spec.program.display()));
        }
    };
    let pid = child.id();
    let running = Running {
        supervisor_pid: std::process::id(),
        supervisor_start_time: process::start_time(std::process::id()),
        pid,
        pid_start_time: process::start_time(pid),
    };
    if let Err(error) = write_json_atomic(&run_dir.join(RUNNING_FILE), &running, 0o644, false) {
        eprintln!("studiod supervise: cannot write {RUNNING_FILE}: {error}");
    }

    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait());
    });

    let started = Instant::now();
    let deadline = spec
        .max_duration
        .map(|seconds| started + seconds_to_duration(seconds));
    let mut stop: Option<(Instant, String)> = None;
    let mut killed = false;
    let status = loop {
        match receiver.recv_timeout(Duration::from_millis(50)) {
            Ok(status) => break status,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err(std::io::Error::other(
                    "the wait thread ended without a status",
                ))
            }
        }
        if stop.is_none() {
            let reason = if stop_signal.load(Ordering::Relaxed) {
                Some("stopped on request".to_string())
            } else if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                Some(format!(
                    "stopped after --max-duration {}",
                    studio_core::duration::format_seconds(spec.max_duration.unwrap_or_default())
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                signal_group(pid, nix::sys::signal::Signal::SIGTERM);
                stop = Some((
                    Instant::now() + seconds_to_duration(spec.stop_grace),
                    reason,
                ));
            }
        }
        if let Some((kill_at, _)) = &stop {
            if !killed && Instant::now() >= *kill_at {
                signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                killed = true;
            }
        }
    };

    end_leftover_processes(pid, spec.stop_grace);

    let (exit_code, signal, wait_error) = match status {
        Ok(status) => (status.code(), status.signal(), None),
        Err(error) => (
            None,
            None,
            Some(format!("waiting for the process failed: {error}")),
        ),
    };
    let reason = match (&stop, wait_error) {
        (_, Some(error)) => Some(error),
        (Some((_, reason)), None) if killed => Some(format!(
            "{reason}; killed after a grace period of {}s",
            spec.stop_grace
        )),
        (Some((_, reason)), None) => Some(reason.clone()),
        (None, None) => signal.map(|signal| format!("killed by signal {signal}")),
    };
    Exit {
        exit_code,
        signal,
        stopped: stop.is_some(),
        reason,
        time: crate::events::now(),
    }
}

/// Converts seconds from the spec, clamping negative, huge or NaN values
/// instead of panicking: the spec comes from a file.
fn seconds_to_duration(seconds: f64) -> Duration {
    let capped = seconds.clamp(0.0, studio_core::duration::MAX_SECONDS);
    Duration::try_from_secs_f64(capped).unwrap_or(Duration::ZERO)
}

fn open_output(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn command(spec: &Spec, output: File) -> Command {
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(&spec.env)
        .stdin(Stdio::null())
        .process_group(0);
    match output.try_clone() {
        Ok(second) => {
            command.stdout(output).stderr(second);
        }
        Err(_) => {
            command.stdout(output).stderr(Stdio::null());
        }
    }
    if let (Some(uid), Some(gid)) = (spec.uid, spec.gid) {
        let name = nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .and_then(|user| std::ffi::CString::new(user.name).ok());
        // SAFETY: the closure runs in the forked child before exec and only
        // calls initgroups, which is what setuid programs do there.
        unsafe {
            command.pre_exec(move || {
                if let Some(name) = &name {
                    nix::unistd::initgroups(name, gid.into()).map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
        command.uid(uid).gid(gid);
    }
    command
}

/// Ends the processes still in the script's process group after the script
/// exited: SIGTERM, then SIGKILL when they outlast `stop_grace` seconds.
fn end_leftover_processes(group: u32, stop_grace: f64) {
    let Ok(raw) = i32::try_from(group) else {
        return;
    };
    let group_id = nix::unistd::Pid::from_raw(raw);
    // Signal 0 only checks that the group still has a member.
    let alive = || nix::sys::signal::killpg(group_id, None).is_ok();
    if !alive() {
        return;
    }
    eprintln!("studiod supervise: the script left processes in group {group}; sending SIGTERM");
    signal_group(group, nix::sys::signal::Signal::SIGTERM);
    let kill_at = Instant::now() + seconds_to_duration(stop_grace);
    while alive() {
        if Instant::now() >= kill_at {
            eprintln!("studiod supervise: processes of group {group} outlasted the grace period; sending SIGKILL");
            signal_group(group, nix::sys::signal::Signal::SIGKILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal_group(pid: u32, signal: nix::sys::signal::Signal) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    let group = nix::unistd::Pid::from_raw(pid);
    if let Err(error) = nix::sys::signal::killpg(group, signal) {
        if error != nix::errno::Errno::ESRCH {
            eprintln!("studiod supervise: cannot send {signal} to process group {pid}: {error}");
        }
    }
}
