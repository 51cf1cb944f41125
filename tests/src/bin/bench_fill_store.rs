//! Copies one finished experiment many times in a Studio home's event log,
//! for the listing benchmark in `scripts/bench_peers.py`.
//!
//! Starting 10,000 real runs takes hours on a small machine. This reads the
//! events of one real run from the log and appends them again under new
//! keys through `studiod::store::EventLog`, the daemon's own writer, in
//! batches. Each copy is what the real run left (created, started,
//! environment, artifacts, finished), and the daemon replays the copies at
//! start as it would after a restart. Run it while no daemon uses the home:
//! sled allows one process per log.
//!
//! Usage: bench_fill_store STUDIOML_HOME TEMPLATE_KEY COPIES

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use studiod::events::Event;
use studiod::store::{CommitHook, EventLog};

/// Copies written per `append_all` call.
const BATCH: usize = 200;

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let [home, template, copies] = arguments.as_slice() else {
        eprintln!("usage: bench_fill_store STUDIOML_HOME TEMPLATE_KEY COPIES");
        return ExitCode::from(2);
    };
    let Ok(copies) = copies.parse::<usize>() else {
        eprintln!("invalid COPIES {copies:?}: give a whole number such as 9999");
        return ExitCode::from(2);
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
    match runtime.block_on(fill(database, template, copies)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn fill(database: PathBuf, template: &str, copies: usize) -> Result<(), String> {
    let hook: CommitHook = Arc::new(|_| {});
    let (log, replay) = EventLog::open(&database, hook).map_err(|error| error.to_string())?;
    let events: Vec<Event> = replay
        .envelopes
        .into_iter()
        .filter(|envelope| envelope.key == template)
        .map(|envelope| envelope.event)
        .collect();
    if !events
        .iter()
        .any(|event| matches!(event, Event::ExperimentFinished(_)))
    {
        return Err(format!(
            "experiment {template} is not a finished experiment of the log at {}: run it to the end first",
            database.display()
        ));
    }

    let mut written = 0;
    while written < copies {
        let end = (written + BATCH).min(copies);
        let mut items = Vec::with_capacity((end - written) * events.len());
        for number in written..end {
            let key = format!("{template}_copy{number:05}");
            items.extend(events.iter().map(|event| (key.clone(), event.clone())));
        }
        log.append_all(items)
            .await
            .map_err(|error| error.to_string())?;
        written = end;
    }
    println!(
        "appended {copies} copies of {template} ({} events each) to {}",
        events.len(),
        database.display()
    );
    Ok(())
}
