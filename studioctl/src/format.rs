//! Formatting of experiments for the terminal.

use chrono::{Local, TimeZone};
use studio_core::api::{Experiment, Status};
use studio_core::duration::format_seconds;

/// Formats seconds since the epoch as local time, `2026-12-04 20:53:14`.
pub fn local_time(seconds: f64) -> String {
    let whole = seconds.floor() as i64;
    match Local.timestamp_opt(whole, 0).single() {
        Some(time) => time.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => format!("{seconds:.0}"),
    }
}

/// Status with its exit code or signal, as `failed (exit 2)`.
pub fn status_text(experiment: &Experiment) -> String {
    match (experiment.status, experiment.exit_code, experiment.signal) {
        (Status::Finished, _, _) => "finished".into(),
        (status, Some(code), _) if status.is_final() => format!("{status} (exit {code})"),
        (status, None, Some(signal)) if status.is_final() => format!("{status} (signal {signal})"),
        (status, _, _) => status.to_string(),
    }
}

fn metric_text(experiment: &Experiment) -> String {
    match (&experiment.metric, experiment.metric_value) {
        (Some(metric), Some(value)) => {
            format!("{}={value:.4}", metric.split(':').next().unwrap_or(metric))
        }
        (Some(metric), None) => format!("{metric}=-"),
        _ => "-".into(),
    }
}

/// Formats experiments as a table with aligned columns.
pub fn table(experiments: &[Experiment], now: f64) -> String {
    let header = ["KEY", "PROJECT", "STATUS", "ADDED", "DURATION", "METRIC"];
    let rows: Vec<[String; 6]> = experiments
        .iter()
        .map(|experiment| {
            [
                experiment.key.clone(),
                experiment.project.clone().unwrap_or_else(|| "-".into()),
                status_text(experiment),
                local_time(experiment.time_added),
                experiment
                    .duration(now)
                    .map_or_else(|| "-".into(), format_seconds),
                metric_text(experiment),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut push_row = |cells: &[String]| {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    };
    push_row(&header.map(String::from));
    for row in &rows {
        push_row(row);
    }
    text
}

/// Lists the resources an experiment asked for, such as `cpus 2, ram 3g`.
fn resources_text(resources: &studio_core::config::Resources) -> String {
    let mut parts = Vec::new();
    if let Some(cpus) = resources.cpus {
        parts.push(format!("cpus {cpus}"));
    }
    let gpu_count = resources
        .gpu_count
        .and_then(|count| i32::try_from(count).ok());
    if let Some(gpus) = resources.gpus.or(gpu_count) {
        parts.push(format!("gpus {gpus}"));
    }
    for (name, value) in [
        ("ram", &resources.ram),
        ("hdd", &resources.hdd),
        ("gpuMem", &resources.gpu_mem),
    ] {
        if let Some(value) = value {
            parts.push(format!("{name} {value}"));
        }
    }
    parts.join(", ")
}

/// Formats the whole record of one experiment, one field a line.
pub fn record(experiment: &Experiment, now: f64) -> String {
    let mut lines = Vec::new();
    let mut field =
        |name: &str, value: String| lines.push(format!("{:<12}{value}", format!("{name}:")));
    field("key", experiment.key.clone());
    field("status", status_text(experiment));
    if let Some(reason) = &experiment.reason {
        field("reason", reason.clone());
    }
    field(
        "project",
        experiment.project.clone().unwrap_or_else(|| "-".into()),
    );
    field("owner", experiment.owner.clone());
    field("command", experiment.command_line());
    field("directory", experiment.cwd.display().to_string());
    let version = experiment
        .python_version
        .as_deref()
        .unwrap_or("version not recorded yet");
    field(
        "python",
        format!("{} ({version})", experiment.python.display()),
    );
    field("host", experiment.host.clone());
    if let Some(pid) = experiment.pid {
        field("pid", pid.to_string());
    }
    field("added", local_time(experiment.time_added));
    if let Some(started) = experiment.time_started {
        field("started", local_time(started));
    }
    if let Some(finished) = experiment.time_finished {
        field("finished", local_time(finished));
    }
    if let Some(duration) = experiment.duration(now) {
        field("duration", format_seconds(duration));
    }
    match &experiment.git {
        Some(git) => {
            let mut text = git.commit.clone();
            if let Some(branch) = &git.branch {
                text.push_str(&format!(" on {branch}"));
            }
            if git.dirty {
                text.push_str(" (uncommitted changes)");
            }
            if let Some(url) = &git.url {
                text.push_str(&format!(" from {url}"));
            }
            field("git", text);
        }
        None => field("git", "-".into()),
    }
    if let Some(metric) = &experiment.metric {
        let value = experiment
            .metric_value
            .map_or("-".into(), |value| value.to_string());
        field("metric", format!("{metric} = {value}"));
    }
    if let Some(seconds) = experiment.max_duration {
        field("max time", format_seconds(seconds));
    }
    if let Some(seconds) = experiment.lifetime {
        field("lifetime", format_seconds(seconds));
    }
    for (name, value) in &experiment.hyperparameters {
        field("hyperparam", format!("{name}={value}"));
    }
    let resources = resources_text(&experiment.resources);
    if !resources.is_empty() {
        field("resources", resources);
    }
    for error in &experiment.artifact_errors {
        field("not stored", error.clone());
    }
    if let Some(by) = &experiment.stopped_by {
        field("stopped by", by.clone());
    }
    for (name, value) in &experiment.tags {
        field("tag", format!("{name}={value}"));
    }
    field(
        "packages",
        format!("{} (pip freeze)", experiment.pip_freeze.len()),
    );
    let mut text = lines.join("\n");
    for package in &experiment.pip_freeze {
        text.push_str(&format!("\n    {package}"));
    }
    text.push('\n');
    text
}
