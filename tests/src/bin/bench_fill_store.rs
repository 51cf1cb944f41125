//! Fills a Studio home's event log with finished experiments, for the
//! listing benchmark in `scripts/bench_peers.py`.
//!
//! Starting 10,000 real runs takes hours on a small machine, so this writes
//! the same events that studiod appends for a real run (created, started,
//! git and environment recorded, finished) through `studiod::store::EventLog`,
//! the daemon's own writer, in batches. The daemon then replays them as it
//! would after a restart. Run it while no daemon uses the home.
//!
//! Usage: bench_fill_store STUDIOML_HOME COUNT [PIP_FREEZE_FILE]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use studio_core::api::GitInfo;
use studio_core::config::Resources;
use studiod::events::{self, Created, EnvironmentRecorded, Event, Finished, Started};
use studiod::store::{CommitHook, EventLog};

/// Experiments written per `append_all` call.
const BATCH: usize = 200;

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let (home, count, freeze) = match arguments.as_slice() {
        [home, count] => (home, count, None),
        [home, count, freeze] => (home, count, Some(freeze)),
        _ => {
            eprintln!("usage: bench_fill_store STUDIOML_HOME COUNT [PIP_FREEZE_FILE]");
            return ExitCode::from(2);
        }
    };
    let Ok(count) = count.parse::<usize>() else {
        eprintln!("invalid COUNT {count:?}: give a whole number such as 10000");
        return ExitCode::from(2);
    };
    let pip_freeze = match freeze {
        None => Vec::new(),
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text.lines().map(str::to_string).collect(),
            Err(error) => {
                eprintln!("cannot read the pip freeze file {path}: {error}");
                return ExitCode::FAILURE;
            }
        },
    };
    let database = studio_core::paths::StudioPaths::with_home(&PathBuf::from(home)).database();

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fill(database, count, pip_freeze)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn fill(database: PathBuf, count: usize, pip_freeze: Vec<String>) -> Result<(), String> {
    let hook: CommitHook = Arc::new(|_| {});
    let (log, _replay) = EventLog::open(&database, hook).map_err(|error| error.to_string())?;
    let owner = std::env::var("USER").unwrap_or_else(|_| "bench".into());
    let host = nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into());
    let run_id = uuid::Uuid::new_v4().simple().to_string();

    let mut index = 0;
    while index < count {
        let end = (index + BATCH).min(count);
        let keys: Vec<String> = (index..end)
            .map(|number| format!("bench_{}_{number:05}", &run_id[..8]))
            .collect();
        // Two appends, as in a real run: the finish time is taken after the
        // start was written, so durations are not negative.
        let mut starts = Vec::with_capacity(keys.len() * 2);
        for (number, key) in (index..end).zip(&keys) {
            starts.extend(start_events(key, number, &owner, &host));
        }
        log.append_all(starts)
            .await
            .map_err(|error| error.to_string())?;
        let mut ends = Vec::with_capacity(keys.len() * 3);
        for (number, key) in (index..end).zip(&keys) {
            ends.extend(end_events(key, number, &pip_freeze));
        }
        log.append_all(ends)
            .await
            .map_err(|error| error.to_string())?;
        index = end;
    }
    println!(
        "wrote {count} finished experiments to {}",
        database.display()
    );
    Ok(())
}

/// The first events of a run of `trivial.py`, as the runner writes them.
fn start_events(key: &str, number: usize, owner: &str, host: &str) -> Vec<(String, Event)> {
    let created = Created {
        project: Some(format!("bench{}", number % 10)),
        owner: owner.to_string(),
        owner_uid: Some(nix::unistd::getuid().as_raw()),
        script: "trivial.py".into(),
        module: false,
        args: vec!["--index".into(), number.to_string()],
        cwd: "/tmp/bench".into(),
        python: "/usr/bin/python3".into(),
        host: host.to_string(),
        resources: Resources::default(),
        max_duration: None,
        lifetime: None,
        metric: None,
    };
    let started = Started {
        pid: 1000 + number as u32,
        pid_start_time: Some(1),
        supervisor_pid: 999,
        supervisor_start_time: Some(1),
    };
    vec![
        (key.to_string(), Event::ExperimentCreated(Box::new(created))),
        (key.to_string(), Event::ExperimentStarted(started)),
    ]
}

/// The events the runner appends once the run's probes and process end.
fn end_events(key: &str, number: usize, pip_freeze: &[String]) -> Vec<(String, Event)> {
    let git = GitInfo {
        url: Some("https://example.invalid/bench.git".into()),
        commit: format!("{number:040x}"),
        branch: Some("main".into()),
        dirty: false,
    };
    let environment = EnvironmentRecorded {
        python_version: Some("3.11.7".into()),
        pip_freeze: pip_freeze.to_vec(),
    };
    let finished = Finished {
        exit_code: Some(0),
        signal: None,
        stopped: false,
        reason: None,
        time: events::now(),
    };
    vec![
        (key.to_string(), Event::GitRecorded { git: Some(git) }),
        (key.to_string(), Event::EnvironmentRecorded(environment)),
        (key.to_string(), Event::ExperimentFinished(finished)),
    ]
}
