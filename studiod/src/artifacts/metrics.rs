//! The `_metrics` artifact: periodic samples of the host's CPU and memory
//! use and, where `nvidia-smi` exists, of its GPUs, one JSON object a line
//! in `metrics.jsonl`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Writes a sample now and every `interval` until `stop` completes.
pub async fn sample_until(
    file: PathBuf,
    pid: u32,
    interval: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        append_sample(&file, Some(pid)).await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut stop => return,
        }
    }
}

/// Writes one last sample, taken after the script ended.
pub async fn sample_once(file: &Path) {
    append_sample(file, None).await;
}

async fn append_sample(file: &Path, pid: Option<u32>) {
    let sample = take_sample(pid).await;
    let Ok(mut line) = serde_json::to_vec(&sample) else {
        return;
    };
    line.push(b'\n');
    let opened = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .await;
    match opened {
        Ok(mut output) => {
            if let Err(error) = output.write_all(&line).await {
                tracing::warn!(file = %file.display(), %error, "cannot write a metrics sample");
            }
        }
        Err(error) => {
            tracing::warn!(file = %file.display(), %error, "cannot open the metrics file")
        }
    }
}

async fn take_sample(pid: Option<u32>) -> serde_json::Value {
    let (cpu_busy, cpu_total) = cpu_times().await.unwrap_or((0, 0));
    let memory = memory_kib().await;
    let process_rss_kib = match pid {
        Some(pid) => process_rss_kib(pid).await,
        None => None,
    };
    serde_json::json!({
        "time": crate::events::now(),
        "cpu_busy_ticks": cpu_busy,
        "cpu_total_ticks": cpu_total,
        "load_average_1m": load_average().await,
        "memory_total_kib": memory.map(|(total, _)| total),
        "memory_available_kib": memory.map(|(_, available)| available),
        "process_rss_kib": process_rss_kib,
        "gpus": gpu_sample().await,
    })
}

/// Busy and total CPU time of the host in clock ticks since boot; the
/// difference of two samples gives the use between them.
async fn cpu_times() -> Option<(u64, u64)> {
    let text = tokio::fs::read_to_string("/proc/stat").await.ok()?;
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|value| value.parse().ok())
        .collect();
    let total: u64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

async fn memory_kib() -> Option<(u64, u64)> {
    let text = tokio::fs::read_to_string("/proc/meminfo").await.ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|value| value.parse().ok())
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

async fn load_average() -> Option<f64> {
    let text = tokio::fs::read_to_string("/proc/loadavg").await.ok()?;
    text.split_whitespace().next()?.parse().ok()
}

async fn process_rss_kib(pid: u32) -> Option<u64> {
    let text = tokio::fs::read_to_string(format!("/proc/{pid}/status"))
        .await
        .ok()?;
    text.lines()
        .find(|line| line.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// One object per GPU from `nvidia-smi`, or null where it is not installed.
async fn gpu_sample() -> serde_json::Value {
    let Ok(program) = which::which("nvidia-smi") else {
        return serde_json::Value::Null;
    };
    let output = tokio::process::Command::new(program)
        .args([
            "--query-gpu=index,utilization.gpu,memory.used,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .output();
    let Ok(Ok(output)) = tokio::time::timeout(Duration::from_secs(10), output).await else {
        return serde_json::Value::Null;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let gpus: Vec<_> = text
        .lines()
        .map(|line| {
            let fields: Vec<_> = line
                .split(',')
                .map(|field| field.trim().parse::<f64>().ok())
                .collect();
            serde_json::json!({
                "index": fields.first().copied().flatten(),
                "utilization_percent": fields.get(1).copied().flatten(),
                "memory_used_mib": fields.get(2).copied().flatten(),
                "memory_total_mib": fields.get(3).copied().flatten(),
            })
        })
        .collect();
    serde_json::Value::Array(gpus)
}
