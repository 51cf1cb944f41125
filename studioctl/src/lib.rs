//! `studio` / `studioctl`, Studio's command-line client. It keeps no state:
//! each command is a request to the local studiod over its Unix socket,
//! which it starts in the background when nothing answers.

pub mod cli;
pub mod client;
pub mod commands;
pub mod format;

use clap::Parser;
use cli::{Cli, Command, DaemonCommand};
use std::process::ExitCode;
use studio_core::paths::StudioPaths;

/// Entry point of both binaries.
pub fn main() -> ExitCode {
    let args = cli::expand_short_aliases(std::env::args().collect());
    let cli = Cli::parse_from(args);

    match cli.command {
        Command::Supervise { run_dir } => {
            return ExitCode::from(studiod::supervisor::main(&run_dir).clamp(0, 255) as u8)
        }
        Command::Daemon(cli::DaemonArgs {
            command:
                DaemonCommand::Run {
                    config,
                    http,
                    verbose,
                },
        }) => {
            return match studiod::run_daemon(config, http, verbose) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            }
        }
        _ => {}
    }

    // Rust ignores SIGPIPE, so printing into a closed pipe (`studio runs
    // list | head`) would panic; a client dies quietly instead, as other
    // command-line tools do. The daemon, handled above, keeps ignoring it.
    // SAFETY: no other thread exists yet, and SIG_DFL is a valid handler.
    unsafe {
        nix::libc::signal(nix::libc::SIGPIPE, nix::libc::SIG_DFL);
    }

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error.into()),
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(error) => fail(&error),
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    let paths = StudioPaths::from_env()?;
    match command {
        Command::Run(args) => return commands::run::run(paths, *args).await,
        Command::Runs(args) => {
            let client = client::Client::new(paths, None);
            commands::runs::runs(&client, args).await?;
        }
        Command::Artifacts(args) => {
            let client = client::Client::new(paths, None);
            commands::artifacts::artifacts(&client, args).await?;
        }
        Command::Logs(args) => {
            let client = client::Client::new(paths, None);
            commands::logs::logs(&client, args).await?;
        }
        Command::Daemon(args) => {
            let config = match &args.command {
                DaemonCommand::Start { config } => config.clone(),
                _ => None,
            };
            let client = client::Client::new(paths, config);
            commands::daemon::daemon(&client, args.command).await?;
        }
        Command::Ui(args) => {
            let client = client::Client::new(paths, None);
            commands::ui::ui(&client, &args).await?;
        }
        Command::Supervise { .. } => unreachable!("handled before the runtime starts"),
    }
    Ok(ExitCode::SUCCESS)
}

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("studio: {error:#}");
    ExitCode::from(2)
}
