//! The command line of `studio` / `studioctl`, compatible with StudioML's.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "studio",
    version,
    about = "Record, run and compare machine-learning experiments",
    after_help = "Run `studio run script.py` instead of `python script.py`. The daemon studiod starts on first use."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a script as a recorded experiment: studio run [flags] script.py [script args]
    Run(Box<RunArgs>),
    /// List, inspect, stop and delete experiments.
    Runs(RunsArgs),
    /// Print an experiment's output; -f follows it while it runs.
    Logs(LogsArgs),
    /// List an experiment's stored artifacts, or unpack one.
    Artifacts(ArtifactsArgs),
    /// Start, stop or inspect the local studiod.
    Daemon(DaemonArgs),
    /// Print the dashboard's address.
    Ui(UiArgs),
    /// Supervise one experiment; started by studiod itself.
    #[command(hide = true)]
    Supervise { run_dir: PathBuf },
}

/// Flags of `studio run`. Only flags before the script belong to Studio;
/// everything after the script goes to the script exactly as typed.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Config file (YAML); default ~/.studioml/config.yaml, else built-in defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Project the experiment belongs to.
    #[arg(long)]
    pub project: Option<String>,
    /// Key of the experiment; default <unix time>_<random hex>.
    #[arg(short = 'e', long)]
    pub experiment: Option<String>,
    /// Return at once and print the experiment's key instead of following it.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Accepted for StudioML compatibility: no authentication is used locally.
    #[arg(long)]
    pub guest: bool,
    /// Accepted for StudioML compatibility: a dirty git tree is recorded, never refused.
    #[arg(long)]
    pub force_git: bool,
    /// CPUs the experiment needs.
    #[arg(long)]
    pub cpus: Option<u32>,
    /// GPUs the experiment needs; a negative count hides all GPUs.
    #[arg(long, allow_negative_numbers = true)]
    pub gpus: Option<i32>,
    /// Memory the experiment needs, such as 3g.
    #[arg(long, allow_hyphen_values = true)]
    pub ram: Option<String>,
    /// Disk the experiment needs, such as 60g.
    #[arg(long, allow_hyphen_values = true)]
    pub hdd: Option<String>,
    /// GPU memory the experiment needs, such as 8g.
    #[arg(long = "gpuMem", allow_hyphen_values = true)]
    pub gpu_mem: Option<String>,
    /// Number of GPUs (StudioML's older name for --gpus).
    #[arg(long = "gpuCount")]
    pub gpu_count: Option<u32>,
    /// Metric to report: NAME, NAME:min or NAME:max.
    #[arg(long)]
    pub metric: Option<String>,
    /// Stop the experiment after this long: 90s, 15m, 1.5h, 2d.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub max_duration: Option<String>,
    /// Skip the experiment if it has not started within this long.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub lifetime: Option<String>,
    /// Time between SIGTERM and SIGKILL when the experiment is stopped: 10s, 1m.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub stop_grace: Option<String>,
    /// Accepted for StudioML compatibility: debug, info, warn, error or crit.
    /// Studio's messages do not depend on it.
    #[arg(short = 'v', long, value_name = "LEVEL")]
    pub verbose: Option<String>,
    /// Queue to submit to instead of running here.
    #[arg(short = 'q', long)]
    pub queue: Option<String>,
    /// Cloud to start workers in: ec2, ec2spot, gcloud or gcspot.
    #[arg(long)]
    pub cloud: Option<String>,
    /// Spot bid, in USD or percent of the on-demand price.
    #[arg(long)]
    pub bid: Option<String>,
    /// PATH:TAG captured once at start (-co).
    #[arg(long = "capture-once", value_name = "PATH:TAG")]
    pub capture_once: Vec<String>,
    /// PATH:TAG captured while the experiment runs and at its end (-c).
    #[arg(short = 'c', long, value_name = "PATH:TAG")]
    pub capture: Vec<String>,
    /// KEY/TAG:NEWTAG artifact of another experiment to reuse (-r).
    #[arg(short = 'r', long, value_name = "KEY/TAG:NEWTAG")]
    pub reuse: Vec<String>,
    /// NAME=SPEC hyperparameter to search (-hp).
    #[arg(long, value_name = "NAME=SPEC")]
    pub hyperparam: Vec<String>,
    /// Optimizer of a hyperparameter search (-opt).
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Number of workers.
    #[arg(long)]
    pub num_workers: Option<u32>,
    /// Extra pip package for remote workers.
    #[arg(long)]
    pub python_pkg: Vec<String>,
    /// EC2 key pair for SSH access to workers.
    #[arg(long)]
    pub ssh_keypair: Option<String>,
    /// Seconds a cloud worker waits for work before it shuts down.
    #[arg(long)]
    pub cloud_timeout: Option<u64>,
    /// Script run at the start of cloud workers.
    #[arg(long)]
    pub user_startup_script: Option<PathBuf>,
    /// Studio version for cloud workers.
    #[arg(long)]
    pub branch: Option<String>,
    /// Singularity container image.
    #[arg(long)]
    pub container: Option<String>,
    /// Port to open on cloud workers.
    #[arg(long)]
    pub port: Vec<u16>,
    /// The script (file.py or package::module) and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "SCRIPT [ARGS]")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Print keys only.
    #[arg(short, long, global = true)]
    pub short: bool,
    /// Print JSON, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// Accepted for StudioML compatibility; the daemon's config applies.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: RunsCommand,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List experiments: mine (default), all, users, projects, user NAME, project NAME.
    List {
        #[arg(value_name = "WHICH", num_args = 0..=2)]
        which: Vec<String>,
    },
    /// Print one experiment's record.
    Show { key: String },
    /// Stop running experiments and wait until they have ended.
    Stop {
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Delete experiments, stopping them first if they run.
    Kill {
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Set tags on an experiment: NAME=VALUE (an empty VALUE removes the tag).
    Tag {
        key: String,
        #[arg(required = true, value_name = "NAME=VALUE")]
        tags: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct ArtifactsArgs {
    #[command(subcommand)]
    pub command: ArtifactsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
    /// List the stored artifacts of an experiment.
    List {
        key: String,
        /// Print JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Unpack an artifact into DEST (default ./TAG), which must not exist;
    /// with DEST `-`, write its tar.gz to standard output instead.
    Get {
        key: String,
        tag: String,
        dest: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the experiment ends.
    #[arg(short, long)]
    pub follow: bool,
    pub key: String,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    #[command(subcommand)]
    pub command: DaemonCommand,
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Show whether studiod runs, and where.
    Status,
    /// Start studiod in the background if it is not running.
    Start {
        /// Config file for the daemon.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Stop studiod; running experiments go on and are re-adopted at the next start.
    Stop,
    /// Run studiod in the foreground.
    Run {
        /// Config file for the daemon.
        #[arg(long)]
        config: Option<PathBuf>,
        /// HTTP address (default 127.0.0.1:5000), or off.
        #[arg(long, env = "STUDIOML_HTTP")]
        http: Option<String>,
        /// Log more: -v for debug, -vv for trace.
        #[arg(short, long, action = clap::ArgAction::Count)]
        verbose: u8,
    },
}

#[derive(Debug, Args)]
pub struct UiArgs {
    /// Accepted for StudioML compatibility; set server.http in the config instead.
    #[arg(long)]
    pub port: Option<u16>,
    /// Accepted for StudioML compatibility.
    #[arg(long)]
    pub host: Option<String>,
    /// Open the dashboard in the default browser (with `xdg-open`).
    #[arg(long)]
    pub open: bool,
}

/// StudioML's multi-letter short flags, which clap cannot declare.
const LONG_ALIASES: &[(&str, &str)] = &[
    ("-co", "--capture-once"),
    ("-hp", "--hyperparam"),
    ("-opt", "--optimizer"),
];

/// Rewrites `-co`, `-hp` and `-opt` (also `-co=VALUE`) to their long forms
/// in the flags of `run`, before the script; script arguments are kept
/// exactly as typed.
pub fn expand_short_aliases(args: Vec<String>) -> Vec<String> {
    let Some(run_position) = args.iter().position(|arg| arg == "run") else {
        return args;
    };
    let value_flags = run_flags_with_values();
    let mut result = Vec::with_capacity(args.len());
    let mut in_script = false;
    let mut is_value = false;
    for (index, arg) in args.into_iter().enumerate() {
        if index <= run_position || in_script {
            result.push(arg);
            continue;
        }
        // The value of a flag, such as `--optimizer plugin.py`, is not the
        // script even when it ends in `.py`.
        if std::mem::take(&mut is_value) {
            result.push(arg);
            continue;
        }
        is_value = value_flags.contains(&arg);
        if !arg.starts_with('-') && (arg.ends_with(".py") || arg.contains("::")) {
            in_script = true;
            result.push(arg);
            continue;
        }
        let replaced = LONG_ALIASES.iter().find_map(|(short, long)| {
            if arg == *short {
                Some(long.to_string())
            } else {
                arg.strip_prefix(&format!("{short}="))
                    .map(|value| format!("{long}={value}"))
            }
        });
        result.push(replaced.unwrap_or(arg));
    }
    result
}

/// Flags of `run` that take a value as the next argument: `--config`,
/// `-e`, and StudioML's multi-letter short forms.
fn run_flags_with_values() -> Vec<String> {
    use clap::CommandFactory;
    let mut flags: Vec<String> = LONG_ALIASES
        .iter()
        .map(|(short, _)| short.to_string())
        .collect();
    let command = Cli::command();
    let Some(run) = command.find_subcommand("run") else {
        return flags;
    };
    for argument in run.get_arguments() {
        if argument.is_positional() || !argument.get_action().takes_values() {
            continue;
        }
        if let Some(long) = argument.get_long() {
            flags.push(format!("--{long}"));
        }
        if let Some(short) = argument.get_short() {
            flags.push(format!("-{short}"));
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn aliases_expand_before_the_script_only() {
        let args = strings(&[
            "studio",
            "run",
            "-co",
            "d:data",
            "-hp=lr=0.1",
            "x.py",
            "-co",
            "keep",
        ]);
        assert_eq!(
            expand_short_aliases(args),
            strings(&[
                "studio",
                "run",
                "--capture-once",
                "d:data",
                "--hyperparam=lr=0.1",
                "x.py",
                "-co",
                "keep"
            ])
        );
    }

    #[test]
    fn flag_values_ending_in_py_are_not_the_script() {
        let args = strings(&[
            "studio",
            "run",
            "--optimizer",
            "plugin.py",
            "-hp",
            "x=0:1",
            "train.py",
            "-hp",
        ]);
        assert_eq!(
            expand_short_aliases(args),
            strings(&[
                "studio",
                "run",
                "--optimizer",
                "plugin.py",
                "--hyperparam",
                "x=0:1",
                "train.py",
                "-hp"
            ])
        );
    }

    #[test]
    fn script_arguments_stay_with_the_script() {
        let cli = Cli::try_parse_from([
            "studio",
            "run",
            "-e",
            "mine",
            "train.py",
            "--experiment",
            "aaa",
            "-v",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("expected run");
        };
        assert_eq!(run.experiment.as_deref(), Some("mine"));
        assert_eq!(run.command, ["train.py", "--experiment", "aaa", "-v"]);
    }

    #[test]
    fn unknown_runner_flag_is_an_error() {
        let error = Cli::try_parse_from(["studio", "run", "--bogus", "train.py"]).unwrap_err();
        assert!(error.to_string().contains("--bogus"));
    }

    #[test]
    fn negative_lifetime_is_accepted() {
        let cli = Cli::try_parse_from(["studio", "run", "--lifetime", "-10m", "x.py"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("expected run");
        };
        assert_eq!(run.lifetime.as_deref(), Some("-10m"));
    }
}
