//! `studio run [flags] script.py [args]`.

use crate::cli::RunArgs;
use crate::client::{encode_segment, Client};
use anyhow::{bail, Context};
use hyper::Method;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use studio_core::api::{Experiment, RunRequest, Status};
use studio_core::config::{Config, Resources};
use studio_core::duration::parse_seconds;
use studio_core::paths::StudioPaths;

pub async fn run(paths: StudioPaths, args: RunArgs) -> anyhow::Result<ExitCode> {
    reject_unsupported(&args)?;
    crate::commands::search::check_flags(&args)?;
    if !args.hyperparam.is_empty() {
        crate::commands::search::validate(&args)?;
    }
    let (request, optimizer_config) = build_request(&paths, &args)?;
    let client = Client::new(paths, args.config.clone());
    if !args.hyperparam.is_empty() {
        return crate::commands::search::run(&client, &args, request, optimizer_config).await;
    }
    let mut experiment: Experiment = client
        .json(Method::POST, "/api/v1/experiments", Some(&request))
        .await?;
    let key = experiment.key.clone();

    if args.detach {
        println!("{key}");
        return Ok(ExitCode::SUCCESS);
    }
    if experiment.status == Status::Queued {
        eprintln!("studio: experiment {key} queued; it starts when a worker slot is free");
        experiment = wait_while_queued(&client, &key).await?;
    }
    if experiment.status.is_final() {
        return Ok(report_end(&experiment));
    }
    eprintln!("studio: experiment {key} running; Ctrl-C stops it");

    let follow = crate::commands::logs::copy_output(&client, &key, 0, true);
    tokio::pin!(follow);
    let mut interrupts = 0;
    // The daemon stores the final capture before it records the end, so the
    // output follow ends only once the artifacts are stored; meanwhile the
    // capture's progress is polled and printed.
    let mut reporter = crate::commands::artifacts::FinalCaptureReporter::default();
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tokio::select! {
            result = &mut follow => {
                result?;
                break;
            }
            _ = ticks.tick() => reporter.poll(&client, &key).await,
            _ = tokio::signal::ctrl_c() => {
                interrupts += 1;
                if interrupts == 1 {
                    eprintln!("\nstudio: stopping experiment {key}: SIGTERM now, SIGKILL after the grace period (press Ctrl-C again to stop waiting)");
                    let path = format!("/api/v1/experiments/{}/stop", encode_segment(&key));
                    if let Err(error) = client.json::<Experiment>(Method::POST, &path, None::<&()>).await {
                        eprintln!("studio: cannot stop {key}: {error:#}");
                    }
                } else {
                    eprintln!("\nstudio: detached from experiment {key}; the stop request stands (SIGKILL after the grace period); `studio runs show {key}` shows how it ended");
                    return Ok(ExitCode::from(130));
                }
            }
        }
    }

    let path = format!("/api/v1/experiments/{}", encode_segment(&key));
    let finished: Experiment = client.json(Method::GET, &path, None::<&()>).await?;
    Ok(report_end(&finished))
}

/// Polls a queued experiment until it has started or ended; Ctrl-C stops
/// it.
async fn wait_while_queued(client: &Client, key: &str) -> anyhow::Result<Experiment> {
    let path = format!("/api/v1/experiments/{}", encode_segment(key));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
            _ = tokio::signal::ctrl_c() => {
                eprintln!("\nstudio: removing experiment {key} from the queue");
                let stop = format!("/api/v1/experiments/{}/stop", encode_segment(key));
                return client.json(Method::POST, &stop, None::<&()>).await;
            }
        }
        let experiment: Experiment = client.json(Method::GET, &path, None::<&()>).await?;
        if experiment.status != Status::Queued {
            return Ok(experiment);
        }
    }
}

/// Prints how the experiment ended and returns the exit code of `studio
/// run`: the script's own, or 128 + the signal that ended it.
fn report_end(experiment: &Experiment) -> ExitCode {
    let key = &experiment.key;
    let reason = experiment
        .reason
        .as_deref()
        .map(|reason| format!(": {reason}"))
        .unwrap_or_default();
    let code = match (experiment.exit_code, experiment.signal) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    };
    match experiment.status {
        Status::Finished => {
            eprintln!("studio: experiment {key} finished");
            ExitCode::SUCCESS
        }
        Status::Failed => {
            eprintln!("studio: experiment {key} failed{reason}");
            exit_code(code)
        }
        Status::Stopped => {
            eprintln!("studio: experiment {key} stopped{reason}");
            exit_code(if code == 0 { 130 } else { code })
        }
        status => {
            eprintln!("studio: experiment {key} is {status}{reason}");
            ExitCode::FAILURE
        }
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code.clamp(1, 255)).unwrap_or(1))
}

/// Flags that later versions will support; they fail before anything is
/// created instead of being silently ignored.
fn reject_unsupported(args: &RunArgs) -> anyhow::Result<()> {
    let unsupported: [(&str, bool); 9] = [
        (
            "--queue",
            args.queue.as_deref().is_some_and(|queue| queue != "local"),
        ),
        ("--cloud", args.cloud.is_some()),
        ("--bid", args.bid.is_some()),
        ("--python-pkg", !args.python_pkg.is_empty()),
        ("--ssh-keypair", args.ssh_keypair.is_some()),
        ("--cloud-timeout", args.cloud_timeout.is_some()),
        ("--user-startup-script", args.user_startup_script.is_some()),
        ("--container", args.container.is_some()),
        ("--port", !args.port.is_empty()),
    ];
    if let Some((flag, _)) = unsupported.iter().find(|(_, used)| *used) {
        bail!("{flag} is not supported yet by this version of Studio; run without it");
    }
    if args.branch.is_some() {
        bail!("--branch is not supported yet by this version of Studio; run without it");
    }
    if let Some(level) = &args.verbose {
        let known = [
            "debug", "info", "warn", "warning", "error", "crit", "critical",
        ];
        if !known.contains(&level.to_ascii_lowercase().as_str()) {
            bail!("invalid --verbose {level:?}: use debug, info, warn, error or crit");
        }
    }
    Ok(())
}

/// Builds the run request and returns it with the config's `optimizer:`
/// section as JSON.
fn build_request(
    paths: &StudioPaths,
    args: &RunArgs,
) -> anyhow::Result<(RunRequest, serde_json::Value)> {
    let script = args.command.first().cloned().context("no script given")?;
    let script_args = args.command[1..].to_vec();
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let module = script.contains("::");
    if !module && cwd.join(&script).is_dir() {
        bail!("script {script} is a directory: give the .py file to run, or use package::module for a module");
    }
    if !module && !cwd.join(&script).is_file() {
        bail!(
            "script {script} not found in {}: check the path, or use package::module for a module",
            cwd.display()
        );
    }
    let python = find_python()?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let artifacts = crate::commands::artifacts::parse_run_flags(
        &args.capture_once,
        &args.capture,
        &args.reuse,
        &cwd,
        home.as_deref(),
    )?;

    let loaded = Config::load(args.config.as_deref(), &paths.config_file(), |name| {
        std::env::var(name).ok()
    })?;
    for warning in &loaded.warnings {
        eprintln!("studio: warning: {warning}");
    }
    let config = loaded.config;

    let max_duration = args
        .max_duration
        .as_deref()
        .map(parse_seconds)
        .transpose()
        .context("--max-duration")?;
    if let Some(seconds) = max_duration {
        if seconds <= 0.0 {
            bail!(
                "invalid --max-duration {:?}: it must be more than 0",
                args.max_duration.as_deref().unwrap_or("")
            );
        }
    }
    let lifetime = args
        .lifetime
        .as_deref()
        .map(parse_seconds)
        .transpose()
        .context("--lifetime")?
        .or(config.experiment_lifetime);
    let stop_grace = args
        .stop_grace
        .as_deref()
        .map(parse_seconds)
        .transpose()
        .context("--stop-grace")?
        .or(Some(config.stop_grace));
    if stop_grace.is_some_and(|seconds| seconds < 0.0) {
        bail!(
            "invalid --stop-grace {:?}: it must be 0 or more seconds",
            args.stop_grace.as_deref().unwrap_or("")
        );
    }
    let resources = resources(&config.resources_needed, args);
    resources.validate().map_err(anyhow::Error::msg)?;
    if let Some(metric) = &args.metric {
        validate_metric(metric)?;
    }

    let optimizer_config = serde_json::to_value(&config.optimizer)
        .context("the config's optimizer: section cannot be converted to JSON")?;
    let request = RunRequest {
        experiment: args.experiment.clone(),
        project: args.project.clone(),
        script,
        args: script_args,
        cwd,
        python,
        env: std::env::vars().collect::<BTreeMap<_, _>>(),
        config_env: config.env.clone(),
        resources,
        max_duration,
        lifetime,
        metric: args.metric.clone(),
        stop_grace,
        artifacts,
        queue: args.queue.clone(),
        num_workers: args.num_workers,
        ..RunRequest::default()
    };
    Ok((request, optimizer_config))
}

fn validate_metric(metric: &str) -> anyhow::Result<()> {
    studio_core::hyperparam::MetricSpec::parse(metric).map_err(anyhow::Error::msg)?;
    Ok(())
}

/// Finds the Python that `python3` names on the caller's PATH, so the
/// experiment runs in the same (virtual) environment as the user's shell.
fn find_python() -> anyhow::Result<PathBuf> {
    if let Some(python) = std::env::var_os("STUDIOML_PYTHON") {
        let python = PathBuf::from(python);
        if !python.is_file() {
            bail!(
                "STUDIOML_PYTHON is {}, which is not a file: set it to a Python interpreter or unset it to use python3 from PATH",
                python.display()
            );
        }
        return Ok(python);
    }
    which::which("python3")
        .or_else(|_| which::which("python"))
        .context(
            "python3 not found on PATH: install Python 3 or set STUDIOML_PYTHON to an interpreter",
        )
}

fn resources(defaults: &Resources, args: &RunArgs) -> Resources {
    let mut resources = defaults.clone();
    if args.cpus.is_some() {
        resources.cpus = args.cpus;
    }
    if args.gpus.is_some() {
        resources.gpus = args.gpus;
    }
    if args.gpu_count.is_some() {
        resources.gpu_count = args.gpu_count;
    }
    if args.ram.is_some() {
        resources.ram = args.ram.clone();
    }
    if args.hdd.is_some() {
        resources.hdd = args.hdd.clone();
    }
    if args.gpu_mem.is_some() {
        resources.gpu_mem = args.gpu_mem.clone();
    }
    resources
}
