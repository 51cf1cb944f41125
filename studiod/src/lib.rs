//! studiod, Studio's per-host daemon, as a library: the binaries `studiod`
//! and `studio` both run it, and tests can boot it on a temporary home.

pub mod api;
pub mod artifacts;
pub mod daemon;
pub mod events;
pub mod metrics;
pub mod probe;
pub mod process;
pub mod projection;
pub mod queue;
pub mod runner;
pub mod search;
pub mod server;
pub mod store;
pub mod supervisor;
pub mod tensorboard;
pub mod tensorboard_ui;
pub mod web;

use std::path::PathBuf;

/// Command line of `studiod`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "studiod",
    version,
    about = "Studio's per-host daemon: records and runs experiments"
)]
pub struct Cli {
    /// Config file; default ~/.studioml/config.yaml, else built-in defaults.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// HTTP address of the API and dashboard (default 127.0.0.1:5000), or off.
    #[arg(long, env = "STUDIOML_HTTP")]
    pub http: Option<String>,
    /// Log more: -v for debug, -vv for trace. RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Option<DaemonCommand>,
}

#[derive(Debug, clap::Subcommand)]
pub enum DaemonCommand {
    /// Run the daemon in the foreground (the default).
    Run,
    /// Supervise one experiment; started by studiod itself.
    #[command(hide = true)]
    Supervise { run_dir: PathBuf },
}

/// Runs the daemon in the foreground with `http` overriding the config.
pub fn run_daemon(
    config: Option<PathBuf>,
    http: Option<String>,
    verbose: u8,
) -> anyhow::Result<()> {
    init_tracing(verbose);
    let paths = studio_core::paths::StudioPaths::from_env()?;
    let socket_mode = match std::env::var("STUDIOML_SOCKET_MODE") {
        Ok(text) => u32::from_str_radix(text.trim_start_matches("0o"), 8)
            .ok()
            .filter(|mode| *mode <= 0o777)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "invalid STUDIOML_SOCKET_MODE {text:?}: use an octal mode such as 0600 (owner only) or 0666 (all users)"
                )
            })?,
        Err(_) => 0o600,
    };
    let options = daemon::Options {
        paths,
        config_file: config,
        http,
        socket_mode,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(daemon::run(options));
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

/// Entry point of the `studiod` binary.
pub fn main() -> std::process::ExitCode {
    use clap::Parser;
    let cli = Cli::parse();
    match cli.command.unwrap_or(DaemonCommand::Run) {
        DaemonCommand::Supervise { run_dir } => {
            std::process::ExitCode::from(supervisor::main(&run_dir).clamp(0, 255) as u8)
        }
        DaemonCommand::Run => match run_daemon(cli.config, cli.http, cli.verbose) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("{error:#}");
                eprintln!("studiod: {error:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
