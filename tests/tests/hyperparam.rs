//! Hyperparameter searches, the local queue, metrics and optimizers, run
//! through the real `studio` and `studiod` binaries. Experiments run the
//! `python3` on PATH, which needs numpy, tensorboardX and scikit-learn
//! (`scripts/test.sh` puts `.venv` first on PATH).

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use studio_tests::{http, repository, stderr, wait_until, Studio};

/// Runs `studio ARGS` and fails the test unless it exits 0; returns stdout.
fn run_ok(studio: &Studio, args: &[&str]) -> String {
    studio.ok(args)
}

/// The experiments of a project, best metric first, as `runs list` prints
/// them with `--json`.
fn project_experiments(studio: &Studio, project: &str) -> Vec<Value> {
    let text = run_ok(studio, &["runs", "list", "project", project, "--json"]);
    serde_json::from_str(&text).expect("list JSON")
}

/// Lists every path under `root`, or nothing when it does not exist.
fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory)
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}

fn metric_values(experiments: &[Value]) -> Vec<f64> {
    experiments
        .iter()
        .map(|experiment| experiment["metric_value"].as_f64().expect("metric value"))
        .collect()
}

/// Most experiments whose run intervals overlap at one instant.
fn max_concurrency(experiments: &[Value]) -> usize {
    let mut points: Vec<(f64, i32)> = Vec::new();
    for experiment in experiments {
        let start = experiment["time_started"].as_f64().expect("started");
        let end = experiment["time_finished"].as_f64().expect("finished");
        points.push((start, 1));
        points.push((end, -1));
    }
    // Ends sort before starts at the same instant.
    points.sort_by(|left, right| left.0.total_cmp(&right.0).then(left.1.cmp(&right.1)));
    let mut current = 0;
    let mut most = 0;
    for (_, change) in points {
        current += change;
        most = most.max(current);
    }
    most as usize
}

/// Parses the `best KEY VALUE NAME=VALUE...` line that a search prints.
fn best_line(output: &str) -> (String, f64, BTreeMap<String, String>) {
    let line = output
        .lines()
        .find(|line| line.starts_with("best "))
        .unwrap_or_else(|| panic!("no best line in {output:?}"));
    let mut words = line.split_whitespace().skip(1);
    let key = words.next().expect("key").to_string();
    let value = words.next().expect("value").parse().expect("number");
    let values = words
        .filter_map(|word| word.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    (key, value, values)
}

const GRID_SCRIPT: &str = "import time\n\
a = 0\n\
b = 0\n\
time.sleep(1)\n\
print(\"score:\", a * 10 + b)";

#[test]
fn grid_of_nine_runs_two_at_a_time() {
    let studio = Studio::new();
    studio.write("search.py", GRID_SCRIPT);
    let output = run_ok(
        &studio,
        &[
            "run",
            "--project",
            "grid3x3",
            "--num-workers",
            "2",
            "--metric",
            "score:max",
            "-hp",
            "a=1:3",
            "-hp",
            "b=1,2,3",
            "search.py",
        ],
    );
    let (best_key, best_value, best_values) = best_line(&output);
    assert_eq!(best_value, 33.0);
    assert_eq!(best_values["a"], "3");
    assert_eq!(best_values["b"], "3");

    let experiments = project_experiments(&studio, "grid3x3");
    assert_eq!(experiments.len(), 9);
    for experiment in &experiments {
        assert_eq!(experiment["status"], "finished", "{experiment}");
    }
    assert_eq!(
        metric_values(&experiments),
        [33.0, 32.0, 31.0, 23.0, 22.0, 21.0, 13.0, 12.0, 11.0]
    );
    assert_eq!(experiments[0]["key"], best_key.as_str());
    assert_eq!(experiments[8]["hyperparameters"]["a"], "1");
    assert_eq!(experiments[8]["hyperparameters"]["b"], "1");
    assert_eq!(max_concurrency(&experiments), 2);

    // The table lists the same order.
    let table = run_ok(&studio, &["runs", "list", "project", "grid3x3"]);
    let first_row = table.lines().nth(1).expect("a row");
    assert!(first_row.contains("score=33.0000"), "{table}");

    // `runs show` prints the values that the experiment ran with.
    let record_text = run_ok(
        &studio,
        &["runs", "show", experiments[8]["key"].as_str().expect("key")],
    );
    assert!(record_text.contains("hyperparam: a=1\n"), "{record_text}");
    assert!(record_text.contains("hyperparam: b=1\n"), "{record_text}");
    assert!(
        record_text.contains("resources:  cpus 2, gpus 0, ram 3g, hdd 60g\n"),
        "{record_text}"
    );

    // A grid search leaves nothing of its own behind once it ended (the
    // daemon cleans up just after the last experiment's end is recorded).
    let searches = studio.studio_home().join("searches");
    let mut leftovers = Vec::new();
    studio_tests::wait_until("the search's directory to be removed", || {
        leftovers = walk(&searches);
        leftovers.is_empty()
    });

    // Each experiment ran in its own workspace with its values substituted.
    let workspace = Path::new(experiments[8]["cwd"].as_str().expect("cwd"));
    let script = std::fs::read_to_string(workspace.join("search.py")).expect("script");
    assert!(script.contains("a = 0\nb = 0\n"), "{script}");
    assert!(
        script.ends_with("print(\"score:\", 1 * 10 + 1)"),
        "{script}"
    );
    assert_eq!(
        std::fs::read_to_string(studio.work().join("search.py")).expect("original"),
        GRID_SCRIPT
    );
}

#[test]
fn bad_specs_fail_before_anything_runs() {
    let studio = Studio::new();
    studio.write("search.py", GRID_SCRIPT);
    let cases: &[(&[&str], &str)] = &[
        (&["-hp", "a=0:0:1"], "the step is 0"),
        (&["-hp", "a"], "missing '='"),
        (&["-hp", "a=0:l3:1"], "log range"),
        (&["-hp", "a=x,2"], "is not a number"),
        (&["-hp", "a=5:1"], "the range is empty"),
        (&["-hp", "rate=1,2"], "does not appear in search.py"),
        (&["--optimizer", "cmaes", "-hp", "a=0:1:q"], "unknown flag"),
        (
            &["--optimizer", "bayes", "-hp", "a=0:1"],
            "unknown --optimizer",
        ),
        (
            &["--optimizer", "cmaes", "search.py"],
            "needs at least one --hyperparam",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        if !flags.contains(&"search.py") {
            args.push("search.py");
        }
        let output = studio.studio(&args);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let listed = run_ok(&studio, &["runs", "list", "all", "--short"]);
    assert_eq!(listed.trim(), "", "experiments were created: {listed}");
    assert!(!studio.studio_home().join("searches").exists());
}

#[test]
fn sklearn_search_beats_the_defaults() {
    let studio = Studio::new();
    let source = repository().join("examples/sklearn/train_svm.py");
    std::fs::copy(&source, studio.work().join("train_svm.py")).expect("copy the example");

    let key = studio.detach(&["--metric", "accuracy:max", "train_svm.py"]);
    let default = studio.wait_for_status(&key, "finished");
    wait_until("the default run's accuracy", || {
        studio.experiment(&key)["metric_value"].is_f64()
    });
    let default_accuracy = studio.experiment(&key)["metric_value"]
        .as_f64()
        .expect("accuracy");
    assert!(default["hyperparameters"]
        .as_object()
        .is_none_or(|map| map.is_empty()));

    let output = run_ok(
        &studio,
        &[
            "run",
            "--metric",
            "accuracy:max",
            "--num-workers",
            "2",
            "-hp",
            "C=0.1,1,10",
            "-hp",
            "gamma=0.0001:3l:0.01",
            "train_svm.py",
        ],
    );
    let (_, best, values) = best_line(&output);
    assert!(
        best > default_accuracy,
        "best {best} vs default {default_accuracy}"
    );
    assert!(best > 0.95, "{best}");
    assert_ne!(values["gamma"], "0.01");

    let experiments = project_experiments(&studio, "hyperparam_train_svm");
    assert_eq!(experiments.len(), 9);
    assert_eq!(metric_values(&experiments)[0], best);
    let gammas: std::collections::BTreeSet<String> = experiments
        .iter()
        .map(|experiment| {
            experiment["hyperparameters"]["gamma"]
                .as_str()
                .expect("gamma")
                .to_string()
        })
        .collect();
    let expected: std::collections::BTreeSet<String> = ["0.0001", "0.001", "0.01"]
        .iter()
        .map(|text| text.to_string())
        .collect();
    assert_eq!(gammas, expected);
}

const QUADRATIC: &str = "x = 0.0\nprint(\"fitness:\", -(x - 3) ** 2)\n";

#[test]
fn cmaes_finds_the_maximum() {
    let studio = Studio::new();
    studio.write("quadratic.py", QUADRATIC);
    let config = studio.write(
        "cmaes.yaml",
        "optimizer:\n  cmaes_config:\n    popsize: 6\n    sigma0: 0.25\n  termination_criterion:\n    generation: 15\n    fitness: -0.002\n  seed: 11\n",
    );
    let output = run_ok(
        &studio,
        &[
            "run",
            "--config",
            config.to_str().expect("path"),
            "--optimizer",
            "cmaes",
            "--num-workers",
            "2",
            "-hp",
            "x=0:10",
            "quadratic.py",
        ],
    );
    let (_, fitness, values) = best_line(&output);
    let x: f64 = values["x"].parse().expect("x");
    assert!((x - 3.0).abs() < 0.1, "x = {x}, output {output}");
    assert!(fitness > -0.01, "{fitness}");
    let experiments = project_experiments(&studio, "hyperparam_quadratic");
    assert!(experiments.len() >= 6, "{}", experiments.len());
    assert_eq!(experiments.len() % 6, 0, "whole generations of 6");
}

const PLUGIN: &str = r#"
import copy


class Optimizer:
    """Shrinks an interval around the best of 4 evenly spaced points."""

    def __init__(self, hyperparameters, config, logger):
        self.parameter = hyperparameters[0]
        self.low = self.parameter.min_range
        self.high = self.parameter.max_range
        self.rounds = 0
        self.limit = config.get("rounds", 5)

    def stop(self):
        return self.rounds >= self.limit

    def ask(self):
        step = (self.high - self.low) / 4
        population = []
        for index in range(4):
            individual = copy.copy(self.parameter)
            individual.values = self.low + step * (index + 0.5)
            population.append([individual])
        return population

    def tell(self, population, fitnesses, behaviors=None):
        best = max(range(len(fitnesses)), key=lambda index: fitnesses[index])
        centre = population[best][0].values
        width = (self.high - self.low) / 4
        self.low, self.high = centre - width, centre + width
        self.rounds += 1
        print("round", self.rounds, "best", centre)
"#;

#[test]
fn plugin_optimizer_drives_a_search() {
    let studio = Studio::new();
    studio.write("quadratic.py", QUADRATIC);
    studio.write("shrink.py", PLUGIN);
    let config = studio.write("plugin.yaml", "optimizer:\n  rounds: 5\n");
    let output = run_ok(
        &studio,
        &[
            "run",
            "--config",
            config.to_str().expect("path"),
            "--optimizer",
            "shrink.py",
            "--num-workers",
            "2",
            "-hp",
            "x=0:10",
            "quadratic.py",
        ],
    );
    let (_, _, values) = best_line(&output);
    let x: f64 = values["x"].parse().expect("x");
    assert!((x - 3.0).abs() < 0.1, "x = {x}, output {output}");
    assert_eq!(
        project_experiments(&studio, "hyperparam_quadratic").len(),
        20
    );
    let searches = studio.studio_home().join("searches");
    let search = std::fs::read_dir(&searches)
        .expect("searches")
        .next()
        .expect("one search")
        .expect("entry")
        .path();
    let log = std::fs::read_to_string(search.join("optimizer.log")).expect("optimizer log");
    assert!(log.contains("round 5 best"), "{log}");
}

#[test]
fn array_parameters_are_npy_artifacts() {
    let studio = Studio::new();
    studio.write(
        "arrays.py",
        "import numpy as np\nfrom studio import fs_tracker\n\
         w = np.load(fs_tracker.get_artifact('w'))\n\
         scale = 1.0\n\
         print('shape:', w.shape[0])\n\
         print('fitness:', float(np.sum(w)) * scale)\n",
    );
    let output = run_ok(
        &studio,
        &[
            "run",
            "--optimizer",
            "random:3",
            "--metric",
            "shape",
            "-hp",
            "w=0:1:4:a",
            "-hp",
            "scale=1:2",
            "arrays.py",
        ],
    );
    assert!(output.contains("best "), "{output}");
    let experiments = project_experiments(&studio, "hyperparam_arrays");
    assert_eq!(experiments.len(), 3);
    for experiment in &experiments {
        assert_eq!(experiment["status"], "finished", "{experiment}");
        assert_eq!(experiment["metric_value"], 4.0);
        let scale: f64 = experiment["hyperparameters"]["scale"]
            .as_str()
            .expect("scale")
            .parse()
            .expect("number");
        assert!((1.0..=2.0).contains(&scale), "{scale}");
        let w = experiment["hyperparameters"]["w"].as_str().expect("w");
        assert_eq!(w.matches(',').count(), 3, "{w}");
    }
}

/// Writes TensorBoard scalars with tensorboardX: `loss` as `simple_value`
/// (TF1, tensorboardX, PyTorch), `acc` and `lr` as 0-d tensors as TF2 writes
/// them (float_val and double tensor_content).
const TENSORBOARD_SCRIPT: &str = r#"
import json, os, struct
from tensorboardX import SummaryWriter
from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboardX.proto.tensor_pb2 import TensorProto
from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto

def tensor_scalar(tag, tensor):
    plugin = SummaryMetadata.PluginData(plugin_name="scalars")
    metadata = SummaryMetadata(plugin_data=plugin)
    return Summary(value=[Summary.Value(tag=tag, tensor=tensor, metadata=metadata)])

tb = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))["tb"]
writer = SummaryWriter(tb)
events = writer._get_file_writer()
for step, loss in enumerate([0.9, 0.0, 0.4]):
    writer.add_scalar("loss", loss, step)
    acc = TensorProto(dtype=1, tensor_shape=TensorShapeProto(), float_val=[1 - loss])
    events.add_summary(tensor_scalar("acc", acc), step)
    content = struct.pack("<d", 0.5 / (step + 1))
    lr = TensorProto(dtype=2, tensor_shape=TensorShapeProto(), tensor_content=content)
    events.add_summary(tensor_scalar("lr", lr), step)
writer.close()
"#;

#[test]
fn tensorboard_scalars_and_metric() {
    let studio = Studio::new();
    studio.write("tb.py", TENSORBOARD_SCRIPT);
    let key = studio.detach(&["--metric", "loss:min", "tb.py"]);
    studio.wait_for_status(&key, "finished");
    wait_until("the loss metric", || {
        studio.experiment(&key)["metric_value"].is_f64()
    });
    // 0.0 is a real minimum, not "no value".
    assert_eq!(studio.experiment(&key)["metric_value"], 0.0);

    let (status, body) = http(
        &studio.http_address(),
        "GET",
        &format!("/api/v1/experiments/{key}/scalars"),
        &[],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let scalars: Value = serde_json::from_str(&body).expect("scalars JSON");
    let loss: Vec<(f64, f64)> = scalars["loss"]
        .as_array()
        .expect("loss series")
        .iter()
        .map(|point| (point[0].as_f64().unwrap(), point[2].as_f64().unwrap()))
        .collect();
    assert_eq!(
        loss,
        [(0.0, 0.9f32 as f64), (1.0, 0.0), (2.0, 0.4f32 as f64)]
    );
    let acc = scalars["acc"].as_array().expect("acc series");
    assert_eq!(acc.len(), 3);
    assert!((acc[1][2].as_f64().unwrap() - 1.0).abs() < 1e-6);
    assert!(acc[0][1].as_f64().unwrap() > 1.0e9, "wall time");
    let lr: Vec<f64> = scalars["lr"]
        .as_array()
        .expect("lr series")
        .iter()
        .map(|point| point[2].as_f64().unwrap())
        .collect();
    assert_eq!(lr, [0.5, 0.25, 0.5 / 3.0]);

    let (status, _) = http(
        &studio.http_address(),
        "GET",
        "/api/v1/experiments/nope/scalars",
        &[],
        "",
    );
    assert_eq!(status, 404);
}

#[test]
fn local_queue_waits_for_a_free_slot() {
    let studio = Studio::new();
    studio.write("slow.py", "import time\ntime.sleep(4)\nprint('done')\n");
    let first = studio.detach(&["--queue", "local", "--num-workers", "1", "slow.py"]);
    let second = studio.detach(&["--queue", "local", "--num-workers", "1", "slow.py"]);
    studio.wait_for_status(&first, "running");
    assert_eq!(studio.experiment(&second)["status"], "queued");
    studio.wait_for_status(&second, "running");
    assert_eq!(studio.experiment(&first)["status"], "finished");
    let finished = studio.wait_for_status(&second, "finished");
    let first = studio.experiment(&first);
    assert!(
        finished["time_started"].as_f64() >= first["time_finished"].as_f64(),
        "the second started before the first ended"
    );

    // A queued experiment can be stopped before it starts.
    let blocker = studio.detach(&["--queue", "local", "--num-workers", "1", "slow.py"]);
    let waiting = studio.detach(&["--queue", "local", "--num-workers", "1", "slow.py"]);
    studio.wait_for_status(&blocker, "running");
    run_ok(&studio, &["runs", "stop", &waiting]);
    let stopped = studio.wait_for_status(&waiting, "stopped");
    assert!(stopped["time_started"].is_null());
    studio.wait_for_status(&blocker, "finished");
}

#[test]
fn interrupt_stops_the_whole_search() {
    let studio = Studio::new();
    studio.write("sleepy.py", "import time\nn = 0\ntime.sleep(30 + n)\n");
    let child = studio
        .command("studio")
        .args(["run", "--num-workers", "2", "-hp", "n=1:6", "sleepy.py"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the search");
    let running = || {
        let text = run_ok(
            &studio,
            &["runs", "list", "project", "hyperparam_sleepy", "--json"],
        );
        let experiments: Vec<Value> = serde_json::from_str(&text).expect("JSON");
        experiments
            .iter()
            .filter(|experiment| experiment["status"] == "running")
            .count()
    };
    wait_until("two running experiments", || running() == 2);
    studio_tests::kill(child.id(), nix::sys::signal::Signal::SIGINT);
    let output = child.wait_with_output().expect("search output");
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    let experiments = project_experiments(&studio, "hyperparam_sleepy");
    assert_eq!(experiments.len(), 6);
    for experiment in &experiments {
        assert_eq!(experiment["status"], "stopped", "{experiment}");
    }
}

#[test]
fn fifty_workspaces_share_one_copy() {
    const MIB: usize = 1024 * 1024;
    let studio = Studio::new();
    studio.write("job.py", "i = 0\nprint('index:', i)\n");
    // Incompressible-looking data, written for real (not a sparse file).
    let mut block = vec![0u8; MIB];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for byte in block.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    {
        use std::io::Write;
        let mut file = std::fs::File::create(studio.work().join("data.bin")).expect("data file");
        for _ in 0..500 {
            file.write_all(&block).expect("write data");
        }
    }
    let output = run_ok(
        &studio,
        &[
            "run",
            "--num-workers",
            "2",
            "--metric",
            "index",
            "-hp",
            "i=1:50",
            "job.py",
        ],
    );
    assert!(output.contains("best "), "{output}");
    let experiments = project_experiments(&studio, "hyperparam_job");
    assert_eq!(experiments.len(), 50);

    let kib = |paths: &[&Path]| -> u64 {
        let output = std::process::Command::new("du")
            .arg("-sk")
            .arg("--total")
            .args(paths)
            .output()
            .expect("du");
        let text = String::from_utf8_lossy(&output.stdout);
        let total = text.lines().last().expect("total line");
        total
            .split_whitespace()
            .next()
            .expect("size")
            .parse()
            .expect("KiB")
    };
    let workspace = kib(&[&studio.work()]);
    let home = kib(&[&studio.studio_home()]);
    let together = kib(&[&studio.studio_home(), &studio.work()]);
    eprintln!("workspace {workspace} KiB, Studio home {home} KiB, both {together} KiB");
    // One private copy for the whole search, plus small files per experiment.
    assert!(
        home < workspace + workspace / 20,
        "home {home} KiB vs workspace {workspace} KiB"
    );
    assert!(
        together < 2 * workspace + workspace / 20,
        "together {together} KiB vs workspace {workspace} KiB"
    );
    assert!(workspace >= 500 * 1024);
}

#[test]
fn gpus_are_shared_out_one_per_experiment() {
    let mut studio = Studio::new();
    // A stand-in for nvidia-smi that reports two idle GPUs and one busy one.
    let bin = studio.work().join("fake-bin");
    std::fs::create_dir_all(&bin).expect("bin directory");
    let fake = bin.join("nvidia-smi");
    std::fs::write(&fake, "#!/bin/sh\nprintf '0, 3\\n1, 40000\\n2, 0\\n'\n")
        .expect("fake nvidia-smi");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    studio.env("PATH", &path);
    studio.write(
        "gpu.py",
        "import os, time\ntrial = 0\ntime.sleep(1)\nprint('device:', os.environ['CUDA_VISIBLE_DEVICES'], trial)\n",
    );
    let output = run_ok(
        &studio,
        &["run", "--metric", "device", "-hp", "trial=1:4", "gpu.py"],
    );
    assert!(output.contains("best "), "{output}");
    let experiments = project_experiments(&studio, "hyperparam_gpu");
    assert_eq!(experiments.len(), 4);
    // One worker per free GPU (0 and 2), never GPU 1, which is busy.
    assert_eq!(max_concurrency(&experiments), 2);
    for (index, left) in experiments.iter().enumerate() {
        let device = left["metric_value"].as_f64().expect("device");
        assert!(device == 0.0 || device == 2.0, "{left}");
        for right in &experiments[index + 1..] {
            let overlap = left["time_started"].as_f64() < right["time_finished"].as_f64()
                && right["time_started"].as_f64() < left["time_finished"].as_f64();
            if overlap {
                assert_ne!(
                    left["metric_value"], right["metric_value"],
                    "{left} {right}"
                );
            }
        }
    }
}

#[test]
fn queued_experiments_survive_a_daemon_restart() {
    let studio = Studio::new();
    studio.write("slow.py", "import time\ntime.sleep(2)\nprint('done')\n");
    studio.write("slower.py", "import time\ntime.sleep(8)\nprint('done')\n");
    let first = studio.detach(&["--queue", "local", "--num-workers", "1", "slower.py"]);
    let second = studio.detach(&["--queue", "local", "--num-workers", "1", "slow.py"]);
    studio.wait_for_status(&first, "running");
    run_ok(&studio, &["daemon", "stop"]);
    wait_until("studiod to stop", || studio.daemon_pid().is_none());
    // The next command starts a new daemon, which queues the second again
    // and counts the re-adopted first against the single worker slot.
    assert_eq!(studio.experiment(&second)["status"], "queued");
    studio.wait_for_status(&first, "finished");
    studio.wait_for_status(&second, "finished");
    let first = studio.experiment(&first);
    let second = studio.experiment(&second);
    let first_finished = first["time_finished"].as_f64().expect("first finished");
    let second_started = second["time_started"].as_f64().expect("second started");
    assert!(
        second_started >= first_finished,
        "the second started at {second_started}, before the first finished at {first_finished}"
    );
}

const FIXED_PLUGIN: &str = r#"
class Optimizer:
    """Proposes x = 1 and x = 9 once and records what it is told."""

    def __init__(self, hyperparameters, config, logger):
        self.told = False

    def stop(self):
        return self.told

    def ask(self):
        return [{"x": 1.0}, {"x": 9.0}]

    def tell(self, population, fitnesses, behaviors=None):
        print("told", fitnesses, behaviors)
        self.told = True
"#;

#[test]
fn slow_generation_members_are_skipped() {
    let studio = Studio::new();
    // x = 1 hangs; x = 9 reports at once, with a behaviour.
    studio.write(
        "hang.py",
        "import time\nx = 0\nif x < 5:\n    time.sleep(120)\nprint('fitness:', -x)\nprint('behavior: [1, 2]')\n",
    );
    studio.write("fixed.py", FIXED_PLUGIN);
    let config = studio.write(
        "skip.yaml",
        "optimizer:\n  termination_criterion:\n    skip_gen_thres: 0.5\n    skip_gen_timeout: 1\n",
    );
    let output = run_ok(
        &studio,
        &[
            "run",
            "--config",
            config.to_str().expect("path"),
            "--optimizer",
            "fixed.py",
            "--num-workers",
            "2",
            "-hp",
            "x=0:10",
            "hang.py",
        ],
    );
    let (_, fitness, values) = best_line(&output);
    assert_eq!(fitness, -9.0);
    assert_eq!(values["x"], "9");

    let experiments = project_experiments(&studio, "hyperparam_hang");
    let status_of = |x: &str| {
        experiments
            .iter()
            .find(|experiment| experiment["hyperparameters"]["x"] == x)
            .map(|experiment| experiment["status"].clone())
    };
    assert_eq!(status_of("1"), Some(Value::from("stopped")));
    assert_eq!(status_of("9"), Some(Value::from("finished")));

    let searches = studio.studio_home().join("searches");
    let search = std::fs::read_dir(&searches)
        .expect("searches")
        .next()
        .expect("one search")
        .expect("entry")
        .path();
    let log = std::fs::read_to_string(search.join("optimizer.log")).expect("optimizer log");
    // The skipped experiment counts as fitness 0 with no behaviour, as in
    // StudioML, so the plugin gets no behaviours at all.
    assert!(log.contains("told [0.0, -9.0] None"), "{log}");
}

#[test]
fn detached_search_returns_its_id() {
    let studio = Studio::new();
    studio.write("search.py", GRID_SCRIPT);
    let id = run_ok(
        &studio,
        &[
            "run",
            "--detach",
            "--metric",
            "score:min",
            "-hp",
            "a=1,2",
            "-hp",
            "b=0",
            "search.py",
        ],
    );
    let id = id.trim().to_string();
    assert!(id.starts_with("hp_"), "{id}");
    let address = studio.http_address();
    let mut search = Value::Null;
    wait_until("the detached search to end", || {
        let (status, body) = http(&address, "GET", &format!("/api/v1/searches/{id}"), &[], "");
        assert_eq!(status, 200, "{body}");
        search = serde_json::from_str(&body).expect("search JSON");
        search["done"] == true
    });
    assert_eq!(search["ended"], 2);
    assert_eq!(search["total"], 2);
    assert_eq!(search["project"], "hyperparam_search");
    assert_eq!(search["best"]["value"], 10.0);
    assert_eq!(search["best"]["hyperparameters"]["a"], "1");
    let experiments = project_experiments(&studio, "hyperparam_search");
    assert_eq!(metric_values(&experiments), [10.0, 20.0]);

    let (status, body) = http(&address, "GET", "/api/v1/searches/hp_nope", &[], "");
    assert_eq!(status, 404, "{body}");
}
