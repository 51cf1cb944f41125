//! Fills a Studio home with finished experiments for benchmarks of the API
//! and the dashboard: each gets the `ExperimentCreated`, `ExperimentStarted`
//! and `ExperimentFinished` events that a real run writes, through the same
//! event log studiod uses.
//!
//! Usage: `cargo run --release -p studiod --example generate_experiments --
//! STUDIOML_HOME COUNT`. The home must not be in use by a running studiod.

use std::path::PathBuf;
use std::sync::Arc;
use studio_core::config::Resources;
use studio_core::paths::StudioPaths;
use studiod::events::{Created, Event, Finished, Started};
use studiod::store::EventLog;

/// Experiments written per atomic append.
const BATCH: usize = 1000;
const PROJECTS: usize = 20;
const OWNERS: usize = 5;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: generate_experiments STUDIOML_HOME COUNT";
    let home = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!(usage))?);
    let count: usize = args
        .next()
        .ok_or_else(|| anyhow::anyhow!(usage))?
        .parse()
        .map_err(|error| anyhow::anyhow!("invalid COUNT: {error}; {usage}"))?;

    let paths = StudioPaths::with_home(&home);
    std::fs::create_dir_all(&home)?;
    let (log, replay) = EventLog::open(&paths.database(), Arc::new(|_: &[_]| {}))?;
    let first = replay.envelopes.len();
    let start = std::time::Instant::now();
    let base_time = studiod::events::now() - count as f64;
    for batch_start in (0..count).step_by(BATCH) {
        let mut items = Vec::with_capacity(BATCH * 3);
        for index in batch_start..(batch_start + BATCH).min(count) {
            let key = format!("bench_{:07}", first + index);
            let started_at = base_time + index as f64;
            items.push((key.clone(), created(index)));
            items.push((
                key.clone(),
                Event::ExperimentStarted(Started {
                    pid: 100_000 + index as u32,
                    pid_start_time: Some(1),
                    supervisor_pid: 1,
                    supervisor_start_time: Some(1),
                }),
            ));
            items.push((
                key,
                Event::ExperimentFinished(Finished {
                    exit_code: Some(0),
                    signal: None,
                    stopped: false,
                    reason: None,
                    time: started_at + 0.5,
                }),
            ));
        }
        log.append_all(items).await?;
    }
    println!(
        "wrote {count} experiments ({} events) to {} in {:.1} s",
        count * 3,
        paths.database().display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn created(index: usize) -> Event {
    Event::ExperimentCreated(Box::new(Created {
        project: Some(format!("project-{}", index % PROJECTS)),
        owner: format!("user{}", index % OWNERS),
        owner_uid: Some(1000 + (index % OWNERS) as u32),
        script: "train.py".into(),
        module: false,
        args: vec!["--lr".into(), format!("0.{}", index % 97 + 1)],
        cwd: "/home/user/project".into(),
        python: "/usr/bin/python3".into(),
        host: "bench".into(),
        resources: Resources::default(),
        max_duration: None,
        lifetime: None,
        metric: Some("loss:min".into()),
        hyperparameters: Default::default(),
    }))
}
