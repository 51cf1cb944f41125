//! End-to-end runs through the real `studio` and `studiod` binaries.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use studio_tests::{kill, repository, stderr, stdout, wait_until, Studio};

/// Copies the general examples into the work directory and commits them,
/// so experiments have a git state to record.
fn with_examples(studio: &Studio) {
    let source = repository().join("examples").join("general");
    let target = studio.work().join("examples").join("general");
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
    }
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .args(args)
            .current_dir(studio.work())
            .env("HOME", studio.home())
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://user:secret@example.com/team/project.git",
    ]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "examples"]);
}

#[test]
fn train_linreg_runs_and_is_recorded() {
    let studio = Studio::new();
    with_examples(&studio);
    let output = studio.studio(&["run", "examples/general/train_linreg.py"]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let printed = stdout(&output);
    for step in 0..10 {
        assert!(
            printed.contains(&format!("step = {step}, loss = ")),
            "{printed}"
        );
    }

    let listing = studio.ok(&["runs", "list", "all", "--json"]);
    let experiments: serde_json::Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(experiments.as_array().unwrap().len(), 1);
    let key = experiments[0]["key"].as_str().unwrap().to_string();
    let table = studio.ok(&["runs", "list", "all"]);
    assert!(
        table.contains(&key) && table.contains("finished"),
        "{table}"
    );

    let record = studio.experiment(&key);
    assert_eq!(record["status"], "finished");
    assert_eq!(record["exit_code"], 0);
    assert!(!record["owner"].as_str().unwrap().is_empty());
    wait_until("git state and pip freeze to be recorded", || {
        let record = studio.experiment(&key);
        record["git"]["commit"].is_string() && !record["pip_freeze"].as_array().unwrap().is_empty()
    });
    let record = studio.experiment(&key);
    assert_eq!(record["git"]["commit"].as_str().unwrap().len(), 40);
    assert_eq!(record["git"]["url"], "https://example.com/team/project.git");
    assert_eq!(record["git"]["dirty"], false);
    let freeze: Vec<&str> = record["pip_freeze"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        freeze.iter().any(|line| line.starts_with("numpy==")),
        "{freeze:?}"
    );

    let shown = studio.ok(&["runs", "show", &key]);
    assert!(shown.contains("status:     finished"), "{shown}");
    assert!(
        shown.contains("command:    python3 examples/general/train_linreg.py"),
        "{shown}"
    );
    assert!(!shown.contains("secret"), "{shown}");
}

#[test]
fn output_streams_while_the_script_runs() {
    let studio = Studio::new();
    studio.write(
        "slow.py",
        "import time\nprint('first line', flush=True)\ntime.sleep(30)\nprint('never')\n",
    );
    let mut child = studio
        .command("studio")
        .args(["run", "slow.py"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert_eq!(first, "first line");
    assert!(
        child.try_wait().unwrap().is_none(),
        "studio run ended before the script"
    );

    let key = studio
        .ok(&["runs", "list", "all", "--short"])
        .trim()
        .to_string();
    assert_eq!(studio.experiment(&key)["status"], "running");
    studio.ok(&["runs", "stop", &key]);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
}

#[test]
fn arguments_and_environment_reach_the_script() {
    let studio = Studio::new();
    studio.write(
        "show.py",
        "import os, sys\nprint(sys.argv[1:])\nprint(os.environ['STUDIOML_EXPERIMENT'])\nprint(os.environ['PYTHONUNBUFFERED'])\nprint(os.getcwd())\nprint(os.environ.get('FROM_CONFIG'))\nprint(os.environ.get('FROM_SHELL'))\n",
    );
    studio.write("config.yaml", "env:\n  FROM_CONFIG: $FROM_SHELL-x\n");
    let output = studio
        .command("studio")
        .args([
            "run",
            "--config",
            "config.yaml",
            "-e",
            "args_test",
            "show.py",
            "--experiment",
            "aaa",
            "-v",
            "a b",
        ])
        .env("FROM_SHELL", "shell")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<String> = stdout(&output).lines().map(String::from).collect();
    assert_eq!(lines[0], "['--experiment', 'aaa', '-v', 'a b']");
    assert_eq!(lines[1], "args_test");
    assert_eq!(lines[2], "1");
    assert_eq!(
        lines[3],
        studio.work().canonicalize().unwrap().display().to_string()
    );
    assert_eq!(lines[4], "shell-x");
    assert_eq!(lines[5], "shell");
}

#[test]
fn stdout_and_stderr_keep_order_and_newlines() {
    let studio = Studio::new();
    studio.write(
        "mixed.py",
        "import sys\nfor i in range(3):\n    print('out', i)\n    print('err', i, file=sys.stderr)\nsys.stdout.write('no newline at end')\n",
    );
    let key = studio.detach(&["mixed.py"]);
    studio.wait_for_status(&key, "finished");
    let logs = studio.ok(&["logs", &key]);
    assert_eq!(
        logs,
        "out 0\nerr 0\nout 1\nerr 1\nout 2\nerr 2\nno newline at end"
    );
}

#[test]
fn module_syntax_runs_python_dash_m() {
    let studio = Studio::new();
    studio.write("pkg/__init__.py", "");
    studio.write(
        "pkg/mod.py",
        "import sys\nprint('module', __name__, sys.argv[1:])\n",
    );
    let output = studio.studio(&["run", "pkg::mod", "x"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "module __main__ ['x']\n");
}

#[test]
fn failing_script_is_failed_with_its_exit_code() {
    let studio = Studio::new();
    studio.write("crash.py", "print('before')\n1/0\n");
    let output = studio.studio(&["run", "-e", "crash", "crash.py"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("ZeroDivisionError"),
        "{}",
        stdout(&output)
    );
    let record = studio.experiment("crash");
    assert_eq!(record["status"], "failed");
    assert_eq!(record["exit_code"], 1);

    studio.write("exit3.py", "import sys\nsys.exit(3)\n");
    let output = studio.studio(&["run", "exit3.py"]);
    assert_eq!(output.status.code(), Some(3));
    let failed = studio.ok(&["runs", "list", "all"]);
    assert_eq!(failed.matches("failed (exit").count(), 2, "{failed}");
}

#[test]
fn stop_ends_a_sleeping_script() {
    let studio = Studio::new();
    studio.write(
        "sleep.py",
        "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n",
    );
    let key = studio.detach(&["sleep.py"]);
    studio.wait_for_status(&key, "running");
    let stopped = studio.ok(&["runs", "stop", &key]);
    assert!(stopped.contains(&key), "{stopped}");
    let record = studio.experiment(&key);
    assert_eq!(record["status"], "stopped");
    assert_eq!(record["signal"], 15);
    // SIGTERM ended it: no SIGKILL after the grace period was needed.
    assert_eq!(record["reason"], "stopped on request");
    let stop_took =
        record["time_finished"].as_f64().unwrap() - record["time_started"].as_f64().unwrap();
    assert!(stop_took < 600.0);
}

#[test]
fn broken_config_stops_any_command_first() {
    let studio = Studio::new();
    std::fs::create_dir_all(studio.studio_home()).unwrap();
    let cases = [
        ("database: {type: local\n", "fix the YAML syntax there"),
        ("- 1\n- 2\n", "write one `key: value` per line"),
        (
            "saveWorkspaceFrequency: -1\n",
            "saveWorkspaceFrequency is -1s, it must be more than 0 seconds",
        ),
        (
            "storage:\n  type: ftp\n",
            "storage type 'ftp' is not supported",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(studio.studio_home().join("config.yaml"), text).unwrap();
        let output = studio.studio(&["runs", "list"]);
        assert_eq!(output.status.code(), Some(2), "{text}: {}", stderr(&output));
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{text}: {message}");
        assert!(message.contains(expected), "{text}: {message}");
        assert!(studio.daemon_pid().is_none(), "{text}: a daemon started");
    }
}

#[test]
fn config_changed_after_start_warns() {
    let studio = Studio::new();
    studio.ok(&["daemon", "start"]);
    let quiet = studio.studio(&["runs", "list"]);
    assert!(!stderr(&quiet).contains("warning"), "{}", stderr(&quiet));
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(studio.studio_home().join("config.yaml"), "stop_grace: 5s\n").unwrap();
    let warned = studio.studio(&["runs", "list"]);
    assert!(warned.status.success(), "{}", stderr(&warned));
    assert!(
        stderr(&warned).contains("changed after studiod started"),
        "{}",
        stderr(&warned)
    );
    assert!(
        stderr(&warned).contains("studio daemon stop"),
        "{}",
        stderr(&warned)
    );
    studio.ok(&["daemon", "stop"]);
}

#[test]
fn processes_left_by_the_script_are_ended() {
    let studio = Studio::new();
    // One child ends on SIGTERM; the other ignores it and needs SIGKILL.
    studio.write(
        "spawn.py",
        "import subprocess\n\
polite = subprocess.Popen(['sleep', '600'])\n\
stubborn = subprocess.Popen(['python3', '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open(\"ready\", \"w\").close(); time.sleep(600)'])\n\
import os, time\n\
while not os.path.exists('ready'):\n    time.sleep(0.05)\n\
open('pids', 'w').write(f'{polite.pid} {stubborn.pid}')\n\
print('spawned')\n",
    );
    let output = studio.studio(&["run", "--stop-grace", "1s", "-e", "spawner", "spawn.py"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(studio.experiment("spawner")["status"], "finished");
    assert_eq!(studio.experiment("spawner")["exit_code"], 0);
    let pids = std::fs::read_to_string(studio.work().join("pids")).unwrap();
    for pid in pids.split_whitespace() {
        let pid: u32 = pid.parse().unwrap();
        wait_until(&format!("process {pid} to end"), || {
            studiod::process::start_time(pid).is_none()
        });
    }
}

#[test]
fn kill_of_a_running_experiment_stops_and_deletes_it() {
    let studio = Studio::new();
    studio.write("sleep.py", "import time\ntime.sleep(600)\n");
    let key = studio.detach(&["sleep.py"]);
    let record = studio.wait_for_status(&key, "running");
    let pid = record["pid"].as_u64().unwrap() as u32;
    studio.ok(&["runs", "kill", &key]);
    let output = studio.studio(&["runs", "show", &key]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("not found"), "{}", stderr(&output));
    assert!(!studio.studio_home().join("experiments").join(&key).exists());
    assert!(
        studiod::process::start_time(pid).is_none(),
        "the script still runs"
    );
}

#[test]
fn max_duration_stops_the_script() {
    let studio = Studio::new();
    studio.write("sleep.py", "import time\ntime.sleep(600)\n");
    let output = studio.studio(&["run", "--max-duration", "1s", "sleep.py"]);
    assert_eq!(output.status.code(), Some(128 + 15));
    let key = studio
        .ok(&["runs", "list", "all", "--short"])
        .trim()
        .to_string();
    let record = studio.experiment(&key);
    assert_eq!(record["status"], "stopped");
    assert_eq!(record["reason"], "stopped after --max-duration 1.0s");
}

#[test]
fn expired_lifetime_skips_the_script() {
    let studio = Studio::new();
    studio.write("touch.py", "open('ran', 'w').close()\n");
    let output = studio.studio(&["run", "--lifetime=-10m", "touch.py"]);
    assert!(!output.status.success());
    assert!(!studio.work().join("ran").exists());
    let key = studio
        .ok(&["runs", "list", "all", "--short"])
        .trim()
        .to_string();
    assert_eq!(studio.experiment(&key)["status"], "stopped");
}

#[test]
fn experiment_survives_daemon_kill() {
    let studio = Studio::new();
    studio.write(
        "long.py",
        "import time, sys\nfor i in range(6):\n    print('tick', i, flush=True)\n    time.sleep(0.5)\nsys.exit(4)\n",
    );
    let key = studio.detach(&["long.py"]);
    studio.wait_for_status(&key, "running");
    let daemon = studio.daemon_pid().expect("daemon pid");
    kill(daemon, nix::sys::signal::Signal::SIGKILL);
    wait_until("the daemon to die", || {
        studiod::process::start_time(daemon).is_none()
    });

    // Any command starts a new daemon, which re-adopts the experiment.
    let record = studio.wait_for_status(&key, "failed");
    assert_ne!(studio.daemon_pid(), Some(daemon));
    assert_eq!(record["exit_code"], 4);
    let logs = studio.ok(&["logs", &key]);
    let expected: String = (0..6).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(logs, expected);
}

#[test]
fn experiment_ending_while_daemon_is_down_is_finished() {
    let studio = Studio::new();
    studio.write("short.py", "import time\ntime.sleep(1)\nprint('done')\n");
    let key = studio.detach(&["short.py"]);
    studio.wait_for_status(&key, "running");
    let daemon = studio.daemon_pid().expect("daemon pid");
    kill(daemon, nix::sys::signal::Signal::SIGKILL);
    wait_until("the experiment to end", || {
        studio
            .studio_home()
            .join("experiments")
            .join(&key)
            .join("run")
            .join("exit.json")
            .exists()
    });
    let record = studio.wait_for_status(&key, "finished");
    assert_eq!(record["exit_code"], 0);
    assert_eq!(studio.ok(&["logs", &key]), "done\n");
}

#[test]
fn dead_process_without_status_is_interrupted() {
    let studio = Studio::new();
    studio.write("sleep.py", "import time\ntime.sleep(600)\n");
    let key = studio.detach(&["sleep.py"]);
    let record = studio.wait_for_status(&key, "running");
    let daemon = studio.daemon_pid().expect("daemon pid");
    kill(daemon, nix::sys::signal::Signal::SIGKILL);
    let running: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            studio
                .studio_home()
                .join("experiments")
                .join(&key)
                .join("run")
                .join("supervisor.json"),
        )
        .unwrap(),
    )
    .unwrap();
    // Kill the supervisor and the script as a reboot would: no exit status.
    kill(
        running["supervisor_pid"].as_u64().unwrap() as u32,
        nix::sys::signal::Signal::SIGKILL,
    );
    kill(
        record["pid"].as_u64().unwrap() as u32,
        nix::sys::signal::Signal::SIGKILL,
    );
    let record = studio.wait_for_status(&key, "interrupted");
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .contains("no exit status"),
        "{record}"
    );
}

#[test]
fn acknowledged_events_survive_daemon_kill() {
    let studio = Studio::new();
    studio.write("noop.py", "pass\n");
    let key = studio.detach(&["-e", "target", "noop.py"]);
    studio.wait_for_status(&key, "finished");
    let address = studio.http_address();
    let authorization = format!("Bearer {}", studio.dashboard_token());
    let daemon = studio.daemon_pid().expect("daemon pid");

    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for writer in 0..8 {
        let address = address.clone();
        let authorization = authorization.clone();
        let acknowledged = acknowledged.clone();
        writers.push(std::thread::spawn(move || {
            for index in 0..10_000 {
                let name = format!("w{writer}_{index}");
                let body = format!("{{\"{name}\": \"v\"}}");
                let result = std::panic::catch_unwind(|| {
                    studio_tests::http(
                        &address,
                        "PUT",
                        "/api/v1/experiments/target/tags",
                        &[("Authorization", &authorization)],
                        &body,
                    )
                });
                match result {
                    Ok((200, _)) => acknowledged.lock().unwrap().push(name),
                    _ => return,
                }
            }
        }));
    }
    wait_until("a burst of appends", || {
        acknowledged.lock().unwrap().len() >= 300
    });
    kill(daemon, nix::sys::signal::Signal::SIGKILL);
    for writer in writers {
        writer.join().unwrap();
    }

    let record = studio.experiment("target");
    let tags = record["tags"].as_object().unwrap();
    let acknowledged = acknowledged.lock().unwrap();
    assert!(acknowledged.len() >= 300);
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|name| !tags.contains_key(name.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged tags lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

#[test]
fn daemon_status_and_stop() {
    let studio = Studio::new();
    let status = studio.studio(&["daemon", "status"]);
    assert_eq!(status.status.code(), Some(3), "{}", stderr(&status));
    assert!(
        stdout(&status).contains("not running"),
        "{}",
        stdout(&status)
    );
    studio.ok(&["daemon", "start"]);
    let status = studio.ok(&["daemon", "status"]);
    assert!(status.contains("running, pid"), "{status}");
    assert!(
        status.contains(&studio.studio_home().display().to_string()),
        "{status}"
    );
    let stopped = studio.ok(&["daemon", "stop"]);
    assert!(stopped.contains("stopped"), "{stopped}");
    assert!(studio.daemon_pid().is_none());
}

#[test]
fn stale_socket_is_replaced() {
    let studio = Studio::new();
    std::fs::create_dir_all(studio.studio_home()).unwrap();
    let socket = studio.studio_home().join("studiod.sock");
    // A socket file that nothing listens on, as a crashed daemon leaves.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    studio.write("hello.py", "print('hi')\n");
    let output = studio.studio(&["run", "hello.py"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "hi\n");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn second_daemon_on_same_home_is_rejected() {
    let studio = Studio::new();
    studio.ok(&["daemon", "start"]);
    let output = studio.command("studiod").output().unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("another studiod"),
        "{}",
        stderr(&output)
    );
}

/// One-line errors that name the value and the fix, with nothing created.
#[test]
fn bad_input_is_rejected_before_anything_changes() {
    let studio = Studio::new();
    studio.write("ok.py", "print('ok')\n");
    studio.write("bad.yaml", "resources_needed:\n  cpus: many\n");
    let cases: [(&[&str], &str); 12] = [
        (&["run", "missing.py"], "script missing.py not found"),
        (&["run", "--bogus", "ok.py"], "--bogus"),
        (
            &["run", "--config", "bad.yaml", "ok.py"],
            "resources_needed.cpus",
        ),
        (
            &["run", "--config", "nope.yaml", "ok.py"],
            "config file nope.yaml not found",
        ),
        (
            &["run", "--max-duration", "soon", "ok.py"],
            "invalid duration \"soon\"",
        ),
        (
            &["run", "--queue", "sqs_q", "ok.py"],
            "--queue is not supported yet",
        ),
        (&["run", "--ram", "1z", "ok.py"], "ram \"1z\" is not a size"),
        (&["run", "--cpus", "0", "ok.py"], "at least 1 CPU"),
        (
            &["run", "-v", "loud", "ok.py"],
            "invalid --verbose \"loud\"",
        ),
        (&["run", "--gpuMem", "-8g", "ok.py"], "gpuMem \"-8g\""),
        (
            &["run", "--max-duration", "-5s", "ok.py"],
            "invalid --max-duration \"-5s\": it must be more than 0",
        ),
        (
            &["run", "--stop-grace", "-1s", "ok.py"],
            "invalid --stop-grace \"-1s\": it must be 0 or more seconds",
        ),
    ];
    for (args, expected) in cases {
        let output = studio.studio(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = stderr(&output);
        assert!(message.contains(expected), "{args:?}: {message}");
        let first_line = message.lines().next().unwrap_or("");
        assert!(
            first_line.contains(expected) || message.lines().count() <= 3,
            "{args:?}: {message}"
        );
    }
    // None of the rejected commands started a daemon or created anything.
    assert!(studio.daemon_pid().is_none());
    assert!(!studio.studio_home().join("experiments").exists());

    let taken = studio.studio(&["run", "-e", "a/b", "ok.py"]);
    assert!(
        stderr(&taken).contains("invalid experiment key \"a/b\""),
        "{}",
        stderr(&taken)
    );
    studio.ok(&["run", "-e", "same", "ok.py"]);
    let again = studio.studio(&["run", "-e", "same", "ok.py"]);
    assert!(
        stderr(&again).contains("experiment same already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(studio.ok(&["logs", "same"]), "ok\n");

    for module in ["pkg::", "::train", "a::b c"] {
        let rejected = studio.studio(&["run", module]);
        assert_eq!(rejected.status.code(), Some(2), "{}", stderr(&rejected));
        assert!(
            stderr(&rejected).contains(&format!("invalid module {module:?}")),
            "{}",
            stderr(&rejected)
        );
    }

    let unnamed = studio.studio(&["run", "--project", "", "ok.py"]);
    assert_eq!(unnamed.status.code(), Some(2), "{}", stderr(&unnamed));
    assert!(
        stderr(&unnamed).contains("invalid --project \"\""),
        "{}",
        stderr(&unnamed)
    );
    let escape = studio.studio(&["runs", "tag", "same", "note=\u{1b}[31mred"]);
    assert_eq!(escape.status.code(), Some(2), "{}", stderr(&escape));
    assert!(
        stderr(&escape).contains("without control characters"),
        "{}",
        stderr(&escape)
    );
    let long = format!("note={}", "x".repeat(5000));
    let too_long = studio.studio(&["runs", "tag", "same", &long]);
    assert!(
        stderr(&too_long).contains("at most 4096 bytes"),
        "{}",
        stderr(&too_long)
    );
    assert!(studio.experiment("same")["tags"]
        .as_object()
        .is_none_or(|tags| tags.is_empty()));
}
