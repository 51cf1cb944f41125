//! `studio run --hyperparam NAME=SPEC ... script.py`: submits a search in
//! one request and follows its progress until every experiment has ended.

use crate::cli::RunArgs;
use crate::client::{encode_segment, Client};
use anyhow::bail;
use hyper::Method;
use std::process::ExitCode;
use std::time::Duration;
use studio_core::api::{RunRequest, SearchInfo, SearchRequest};
use studio_core::hyperparam::{parse_grid, OptimizerParam};

/// Time between two progress requests.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Checks the `--hyperparam` values on the client, so a typo fails before
/// anything is copied; studiod checks them again.
pub fn validate(args: &RunArgs) -> anyhow::Result<()> {
    let grid = args.optimizer.as_deref().is_none_or(|name| name == "grid");
    for argument in &args.hyperparam {
        if grid {
            parse_grid(argument)?;
        } else {
            OptimizerParam::parse(argument)?;
        }
    }
    Ok(())
}

pub async fn run(
    client: &Client,
    args: &RunArgs,
    run: RunRequest,
    optimizer_config: serde_json::Value,
) -> anyhow::Result<ExitCode> {
    let request = SearchRequest {
        run,
        hyperparams: args.hyperparam.clone(),
        optimizer: args.optimizer.clone(),
        optimizer_config,
    };
    let info: SearchInfo = client
        .json(Method::POST, "/api/v1/searches", Some(&request))
        .await?;
    let id = info.id.clone();
    if args.detach {
        println!("{id}");
        eprintln!(
            "studio: search {id} started in project {}; `studio runs list project {}` shows its experiments",
            info.project, info.project
        );
        return Ok(ExitCode::SUCCESS);
    }
    let size = info.total.map_or_else(
        || "an adaptive number of".to_string(),
        |total| total.to_string(),
    );
    eprintln!(
        "studio: search {id} runs {size} experiments in project {}, {} at a time; Ctrl-C stops it",
        info.project, info.workers
    );

    let path = format!("/api/v1/searches/{}", encode_segment(&id));
    let mut last_line = String::new();
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = tokio::signal::ctrl_c() => {
                if stopping {
                    eprintln!("\nstudio: detached; search {id} goes on stopping");
                    return Ok(ExitCode::from(130));
                }
                stopping = true;
                eprintln!("\nstudio: stopping search {id} and its experiments");
                let stop = format!("/api/v1/searches/{}/stop", encode_segment(&id));
                if let Err(error) = client.json::<SearchInfo>(Method::POST, &stop, None::<&()>).await {
                    eprintln!("studio: cannot stop search {id}: {error:#}");
                }
            }
        }
        let info: SearchInfo = client.json(Method::GET, &path, None::<&()>).await?;
        let line = progress_line(&info);
        if line != last_line {
            eprintln!("studio: {line}");
            last_line = line;
        }
        if info.done {
            return Ok(report_end(&info, stopping));
        }
    }
}

fn progress_line(info: &SearchInfo) -> String {
    let total = info.total.map_or_else(
        || info.experiments.len().to_string(),
        |total| total.to_string(),
    );
    let mut line = format!("{} of {total} experiments ended", info.ended);
    if info.failed > 0 {
        line.push_str(&format!(" ({} failed)", info.failed));
    }
    if let Some(best) = &info.best {
        let name = info.metric.as_deref().map_or("fitness", |metric| {
            metric.split(':').next().unwrap_or(metric)
        });
        line.push_str(&format!(", best {name} {} ({})", best.value, best.key));
    }
    line
}

fn report_end(info: &SearchInfo, stopped: bool) -> ExitCode {
    let id = &info.id;
    if let Some(error) = &info.error {
        eprintln!("studio: search {id} failed: {error}");
        return ExitCode::FAILURE;
    }
    let verb = if stopped || info.stopped {
        "stopped"
    } else {
        "done"
    };
    eprintln!(
        "studio: search {id} {verb}: {} experiments in project {}",
        info.experiments.len(),
        info.project
    );
    if let Some(best) = &info.best {
        let values: Vec<String> = best
            .hyperparameters
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        println!("best {} {} {}", best.key, best.value, values.join(" "));
    }
    if stopped || info.stopped {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    }
}

/// Rejects search flags used without a search.
pub fn check_flags(args: &RunArgs) -> anyhow::Result<()> {
    if args.hyperparam.is_empty() {
        if args.optimizer.is_some() {
            bail!("--optimizer needs at least one --hyperparam NAME=SPEC to search");
        }
        if args.num_workers.is_some() && args.queue.as_deref() != Some("local") {
            bail!("--num-workers applies to searches and to --queue local; add one of them or drop it");
        }
    }
    Ok(())
}
