#!/usr/bin/env python3
"""Benchmark Studio against Guild AI, MLflow and StudioML 0.0.49, side by side.

One command measures every tool on this machine in one run and prints a
markdown report (machine, versions, table of medians and Studio/peer ratios):

    scripts/bench_peers.py            # full run: installs the peers, builds Studio
    scripts/bench_peers.py --smoke    # tiny sizes, Studio only, no installs (tests)

The full run installs the peers from PyPI into `.bench-venv/` (gitignored,
reused when present), builds Studio with the `peer-bench` profile (release,
with the cloud SDKs that no case runs optimised less), and runs
the five cases of docs/benchmarks.md. Runs of different tools
alternate, and every tool works in its own private home under a temporary
directory, so nothing touches ~/.studioml, ~/.guild or ./mlruns. The MLflow
tracking server it starts listens on 127.0.0.1 only and is stopped at the end.

The driver uses the Python standard library only; the peers and
tensorboardX live in the virtual environment.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(REPOSITORY, ".bench-venv")

# Exact versions, so that two full runs compare the same peers. StudioML
# 0.0.49 imports only with urllib3<2 and requests_toolbelt<1, because its
# vendored pyrebase imports urllib3.contrib.appengine. tensorboardX writes
# the TensorBoard files of case 2.
PEER_PACKAGES = [
    "guildai==0.9.0",
    "mlflow==3.17.2",
    "studioml==0.0.49",
    "urllib3<2",
    "requests_toolbelt<1",
    "tensorboardX==2.6.5",
]
PEER_DISTRIBUTIONS = ["guildai", "mlflow", "studioml", "tensorboardX"]

# Sizes of the full run and of --smoke.
FULL = {
    "overhead_runs": 7,
    "metric_runs": 3,
    "metric_points": 10_000,
    "listing_runs": 3,
    "listing_count": 10_000,
    "small_files": 16_384,
    "small_file_bytes": 16 * 1024,
    "large_files": 3,
    "large_file_bytes": 256 * 1024 * 1024,
    "grid_runs": 2,
    "grid_size": 20,
    "grid_sleep": 1.0,
    "grid_workers": 2,
}
SMOKE = {
    "overhead_runs": 2,
    "metric_runs": 1,
    "metric_points": 200,
    "listing_runs": 1,
    "listing_count": 300,
    "small_files": 100,
    "small_file_bytes": 1024,
    "large_files": 1,
    "large_file_bytes": 1024 * 1024,
    "grid_runs": 1,
    "grid_size": 4,
    "grid_sleep": 0.1,
    "grid_workers": 2,
}

# Maximum wait for any one command or condition. It guards against hangs
# and is not a speed requirement.
COMMAND_TIMEOUT = 900
VISIBLE_TIMEOUT = 60

NOT_IN_BUILD = "not available in this build"


class BenchError(Exception):
    """A measurement that could not be made or verified."""


# ---------------------------------------------------------------- helpers


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(command, env=None, cwd=None, check=True, capture=True, timeout=COMMAND_TIMEOUT):
    """Run a command with its output captured and return the CompletedProcess."""
    completed = subprocess.run(
        command,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE if capture else subprocess.DEVNULL,
        text=True,
        timeout=timeout,
    )
    if check and completed.returncode != 0:
        raise BenchError(
            f"{' '.join(command)} exited with {completed.returncode}: "
            f"{last_line(completed.stderr) or last_line(completed.stdout)}"
        )
    return completed


def timed(command, env=None, cwd=None, check=True):
    """Run a command and return (seconds, CompletedProcess)."""
    start = time.perf_counter()
    completed = run(command, env=env, cwd=cwd, check=check)
    return time.perf_counter() - start, completed


def last_line(text):
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def wait_until(condition, timeout=VISIBLE_TIMEOUT, interval=0.02):
    """Poll `condition` until it returns a true value, and return that value
    (None after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_json(port, method, path, body=None, timeout=60):
    """Send one request to a server on 127.0.0.1 and return (status, parsed
    JSON or text)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        data = response.read().decode("utf-8", "replace")
    finally:
        connection.close()
    try:
        return response.status, json.loads(data)
    except json.JSONDecodeError:
        return response.status, data


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


def directory_size(path, skip=None):
    """Count (files, bytes) under path, leaving out directories named `skip`."""
    files = total = 0
    for root, directories, names in os.walk(path):
        if skip in directories:
            directories.remove(skip)
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
                files += 1
            except OSError:
                pass
    return files, total


def mib(size):
    return f"{size / (1024 * 1024):.0f} MiB"


def rotated(items, index):
    """Rotate the items by `index`, so that each round another tool goes first."""
    if not items:
        return []
    shift = index % len(items)
    return items[shift:] + items[:shift]


# ------------------------------------------------------------ the results


class Results:
    """Rows of the report. A row with no samples carries the reason."""

    def __init__(self):
        self.rows = []
        self.footnotes = []

    def add(self, case, group, tool, what, samples=None, note=""):
        self.rows.append(
            {"case": case, "group": group, "tool": tool, "what": what,
             "samples": list(samples or []), "note": note}
        )

    def samples(self, case, group, tool):
        for row in self.rows:
            if (row["case"], row["group"], row["tool"]) == (case, group, tool):
                return row["samples"]
        raise KeyError((case, group, tool))

    def markdown(self):
        lines = [
            "| case | measure | tool | what is timed | median (s) | runs | Studio ÷ tool | note |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            samples = row["samples"]
            median = statistics.median(samples) if samples else None
            studio = self.studio_median(row["case"], row["group"])
            if row["tool"] == "Studio" or median is None or studio is None:
                ratio = "—"
            else:
                ratio = f"{studio / median:.3g}"
            lines.append(
                "| {case} | {group} | {tool} | {what} | {median} | {runs} | {ratio} | {note} |".format(
                    case=row["case"],
                    group=row["group"],
                    tool=row["tool"],
                    what=row["what"],
                    median=f"{median:.3f}" if median is not None else "—",
                    runs=len(samples) if samples else "—",
                    ratio=ratio,
                    note=row["note"],
                )
            )
        return "\n".join(lines)

    def studio_median(self, case, group):
        for row in self.rows:
            if (row["case"], row["group"], row["tool"]) == (case, group, "Studio") and row["samples"]:
                return statistics.median(row["samples"])
        return None


# ---------------------------------------------------------------- scripts


def trivial_script():
    return 'print("hello")\n'


def mlflow_trivial_script():
    return (
        "import mlflow\n"
        "with mlflow.start_run():\n"
        "    pass\n"
        'print("hello")\n'
    )


def tensorboard_script(points):
    # Studio gives the script its `tb` directory in the artifact mapping;
    # under Guild the run directory is the working directory.
    return (
        "import json, os\n"
        "from tensorboardX import SummaryWriter\n"
        f"count = {points}\n"
        'mapping = os.environ.get("STUDIOML_ARTIFACT_MAPPING")\n'
        'logdir = json.load(open(mapping))["tb"] if mapping else "."\n'
        "writer = SummaryWriter(logdir)\n"
        "for step in range(count):\n"
        '    writer.add_scalar("loss", float(step), step)\n'
        "writer.close()\n"
    )


def mlflow_metrics_script(points):
    return (
        "import time\n"
        "import mlflow\n"
        "from mlflow.entities import Metric\n"
        "from mlflow.tracking import MlflowClient\n"
        f"count = {points}\n"
        "client = MlflowClient()\n"
        "with mlflow.start_run() as run:\n"
        "    now = int(time.time() * 1000)\n"
        "    batch = []\n"
        "    for step in range(count):\n"
        '        batch.append(Metric("loss", float(step), now, step))\n'
        "        if len(batch) == 1000:\n"
        "            client.log_batch(run.info.run_id, metrics=batch)\n"
        "            batch = []\n"
        "    if batch:\n"
        "        client.log_batch(run.info.run_id, metrics=batch)\n"
        '    print("run_id", run.info.run_id)\n'
    )


def sleep_script(seconds):
    # `x = 0` is the hyperparameter: Studio and StudioML substitute it in a
    # copy of the script, Guild sets it as a global flag.
    return (
        "import time\n"
        "x = 0\n"
        f"time.sleep({seconds})\n"
        'print("loss:", x)\n'
    )


# ------------------------------------------------------------------ tools


class Studio:
    """Studio on a private STUDIOML_HOME with its own HTTP port."""

    name = "Studio"

    def __init__(self, binary, root, python, label):
        self.binary = binary
        self.home = os.path.join(root, f"studio-{label}")
        self.port = free_port()
        self.env = dict(
            os.environ,
            STUDIOML_HOME=self.home,
            STUDIOML_HTTP=f"127.0.0.1:{self.port}",
            STUDIOML_PYTHON=python,
            AWS_EC2_METADATA_DISABLED="true",
        )
        self.env.pop("STUDIOML_SOCKET", None)
        os.makedirs(self.home, exist_ok=True)
        self.started = False

    def start(self):
        run([self.binary, "daemon", "start"], env=self.env)
        self.started = True

    def stop(self):
        if self.started:
            run([self.binary, "daemon", "stop"], env=self.env, check=False)
            self.started = False

    def command(self, *args):
        return [self.binary, *args]

    def experiment(self, key):
        status, body = http_json(self.port, "GET", f"/api/v1/experiments/{key}")
        if status != 200:
            raise BenchError(f"GET experiment {key}: {status} {body}")
        return body

    def settle(self, key):
        """Wait for the background probes of a run (pip freeze, git) to finish,
        so that they do not take CPU from the next tool's measurement."""
        wait_until(lambda: self.experiment(key).get("python_version"), timeout=30, interval=0.1)

    def version(self):
        return last_line(run([self.binary, "--version"]).stdout)


class Guild:
    name = "Guild AI"

    def __init__(self, venv_bin, root, label):
        self.binary = os.path.join(venv_bin, "guild")
        self.home = os.path.join(root, f"guild-{label}")
        os.makedirs(self.home, exist_ok=True)
        self.env = dict(os.environ, GUILD_HOME=self.home, PATH=venv_bin + os.pathsep + os.environ["PATH"])

    def command(self, *args):
        return [self.binary, *args]

    def runs_dir(self):
        return os.path.join(self.home, "runs")

    def newest_run(self):
        runs = [os.path.join(self.runs_dir(), name) for name in os.listdir(self.runs_dir())]
        return max(runs, key=lambda path: os.path.getmtime(os.path.join(path, ".guild", "attrs", "started")))


class StudioML:
    """The original StudioML 0.0.49 with a local database, local storage and
    the queue named `local`, the set-up in which it runs a script on one
    host. `Bench.studioml_plain_runs` records what the plain commands do."""

    name = "StudioML 0.0.49"

    def __init__(self, venv_bin, root, label):
        self.root = os.path.join(root, f"studioml-{label}")
        self.home = os.path.join(self.root, "home")
        self.config = os.path.join(self.root, "config.yaml")
        for directory in ("home", "db", "storage"):
            os.makedirs(os.path.join(self.root, directory), exist_ok=True)
        write(
            self.config,
            "database:\n"
            "  type: local\n"
            f"  endpoint: {self.root}/db\n"
            "  bucket: studioml-meta\n"
            "  authentication: none\n"
            "storage:\n"
            "  type: local\n"
            f"  endpoint: {self.root}/storage\n"
            "  bucket: studioml-artifacts\n"
            "resources_needed: {cpus: 1, ram: 1g, hdd: 1g, gpus: 0}\n"
            "saveWorkspaceFrequency: 1m\n"
            "saveMetricsFrequency: 1m\n"
            "verbose: error\n",
        )
        # The `studio` bash dispatcher finds `studio-run` on PATH.
        self.env = dict(
            os.environ,
            HOME=self.home,
            PATH=venv_bin + os.pathsep + os.environ["PATH"],
            AWS_EC2_METADATA_DISABLED="true",
            PYTHONWARNINGS="ignore",
        )
        self.binary = os.path.join(venv_bin, "studio")

    def run_command(self, *extra):
        return [self.binary, "run", "--config", self.config, "--queue", "local", "--force-git", *extra]

    def experiments(self):
        directory = os.path.join(self.root, "db", "studioml-meta", "experiments")
        records = []
        for name in os.listdir(directory) if os.path.isdir(directory) else []:
            with open(os.path.join(directory, name)) as handle:
                records.append(json.load(handle))
        return records

    def blob_bytes(self):
        return directory_size(os.path.join(self.root, "storage"))[1]


class MLflowServer:
    """`mlflow server` with a SQLite store, on 127.0.0.1 only."""

    name = "MLflow"

    def __init__(self, venv_bin, root):
        self.venv_bin = venv_bin
        self.root = os.path.join(root, "mlflow")
        os.makedirs(self.root, exist_ok=True)
        self.database = os.path.join(self.root, "mlflow.db")
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.env = dict(
            os.environ,
            MLFLOW_TRACKING_URI=self.uri,
            PATH=venv_bin + os.pathsep + os.environ["PATH"],
            PYTHONWARNINGS="ignore",
            AWS_EC2_METADATA_DISABLED="true",
        )
        self.process = None

    def start(self):
        command = [
            os.path.join(self.venv_bin, "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{self.database}",
            "--default-artifact-root", os.path.join(self.root, "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]
        self.log_file = open(os.path.join(self.root, "server.log"), "w")
        self.process = subprocess.Popen(
            command, env=self.env, cwd=self.root, stdin=subprocess.DEVNULL,
            stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        healthy = wait_until(self.healthy, timeout=180, interval=0.5)
        if not healthy:
            self.stop()
            raise BenchError(f"mlflow server did not respond on {self.uri} within 180 s; see {self.log_file.name}")

    def healthy(self):
        if self.process.poll() is not None:
            raise BenchError(f"mlflow server exited with {self.process.returncode}; see {self.log_file.name}")
        try:
            status, _ = http_json(self.port, "GET", "/health", timeout=2)
            return status == 200
        except OSError:
            return False

    def stop(self):
        if self.process and self.process.poll() is None:
            # The server runs gunicorn or uvicorn workers in its own session.
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def api(self, method, path, body=None):
        status, answer = http_json(self.port, method, "/api/2.0/mlflow/" + path, body)
        if status != 200:
            raise BenchError(f"MLflow {method} {path}: {status} {answer}")
        return answer


# ------------------------------------------------------------------ cases


class Bench:
    def __init__(self, args, sizes, studio_binary, python, peers, root):
        self.args = args
        self.sizes = sizes
        self.studio_binary = studio_binary
        self.python = python
        self.peers = peers
        self.root = root
        self.venv_bin = os.path.join(VENV, "bin")
        self.results = Results()
        self.mlflow = None

    def peer(self, name):
        return name in self.peers

    def workdir(self, name, files):
        path = os.path.join(self.root, name)
        for relative, text in files.items():
            write(os.path.join(path, relative), text)
        return path

    def mlflow_server(self):
        if self.mlflow is None:
            log("starting the MLflow tracking server")
            self.mlflow = MLflowServer(self.venv_bin, self.root)
            self.mlflow.start()
        return self.mlflow

    def close(self):
        if self.mlflow is not None:
            self.mlflow.stop()

    # -- case 1 ------------------------------------------------------------

    def case_overhead(self):
        log("case 1: one run of a trivial script")
        runs = self.sizes["overhead_runs"]
        work = self.workdir("case1", {"trivial.py": trivial_script(), "trivial_mlflow.py": mlflow_trivial_script()})
        studio = Studio(self.studio_binary, self.root, self.python, "case1")
        studio.start()
        tools = []
        samples = {}

        def bare():
            seconds, _ = timed([self.python, "trivial.py"], cwd=work)
            return seconds

        def through_studio():
            key = f"overhead_{uuid.uuid4().hex[:8]}"
            seconds, completed = timed(studio.command("run", "-e", key, "trivial.py"), env=studio.env, cwd=work)
            if "hello" not in completed.stdout:
                raise BenchError(f"studio run printed {completed.stdout!r}, not the script's output")
            if studio.experiment(key)["status"] != "finished":
                raise BenchError(f"Studio experiment {key} did not finish")
            studio.settle(key)
            return seconds

        tools.append(("python3", bare))
        tools.append(("Studio", through_studio))

        if self.peer("guild"):
            guild = Guild(self.venv_bin, self.root, "case1")

            def through_guild():
                seconds, completed = timed(guild.command("run", "-y", "trivial.py"), env=guild.env, cwd=work)
                if "hello" not in completed.stdout:
                    raise BenchError(f"guild run printed {completed.stdout!r}")
                return seconds

            tools.append(("Guild AI", through_guild))

        if self.peer("mlflow"):
            server = self.mlflow_server()

            def through_mlflow():
                seconds, _ = timed([os.path.join(self.venv_bin, "python"), "trivial_mlflow.py"], env=server.env, cwd=work)
                return seconds

            tools.append(("MLflow", through_mlflow))

        studioml_note = ""
        if self.peer("studioml"):
            studioml = StudioML(self.venv_bin, self.root, "case1")

            def through_studioml():
                before = len(studioml.experiments())
                seconds, completed = timed(studioml.run_command("trivial.py"), env=studioml.env, cwd=work, check=False)
                records = studioml.experiments()
                if len(records) != before + 1 or "hello" not in completed.stdout + completed.stderr:
                    raise BenchError(f"StudioML ran nothing: {last_line(completed.stderr)}")
                newest = max(records, key=lambda record: record.get("time_added", 0))
                if newest.get("status") != "finished":
                    raise BenchError(f"StudioML experiment status {newest.get('status')}")
                return seconds

            tools.append(("StudioML 0.0.49", through_studioml))
            studioml_note = (
                "local DB, local storage, `--queue local`: the script runs, then the worker exits 1 "
                "with `TypeError: Unknown type of None` on the empty queue. "
                + self.studioml_plain_runs(work)
            )

        try:
            for _, measure in tools:  # warm caches and daemons once
                measure()
            for index in range(runs):
                for name, measure in rotated(tools, index):
                    samples.setdefault(name, []).append(measure())
        finally:
            studio.stop()

        what = {
            "python3": "`python3 trivial.py`",
            "Studio": "`studio run trivial.py` (daemon warm)",
            "Guild AI": "`guild run -y trivial.py`",
            "MLflow": "`python3 trivial_mlflow.py` (`mlflow.start_run()`, local server)",
            "StudioML 0.0.49": "`studio run --config local.yaml --queue local --force-git trivial.py`",
        }
        for name, _ in tools:
            note = studioml_note if name == "StudioML 0.0.49" else ""
            self.results.add(1, "trivial run", name, what[name], samples[name], note)

    def studioml_plain_runs(self, work):
        """Run StudioML's plain `studio run trivial.py` with no config, then
        with the local config but no `--queue`, and describe what happened."""
        studioml = StudioML(self.venv_bin, self.root, "plain")
        without_config = run([studioml.binary, "run", "trivial.py"], env=studioml.env, cwd=work, check=False)
        plain = [studioml.binary, "run", "--config", studioml.config, "--force-git", "trivial.py"]
        without_queue = run(plain, env=studioml.env, cwd=work, check=False)
        queues = os.path.join(studioml.home, ".studioml", "queue")
        queued = sorted(os.listdir(queues)) if os.path.isdir(queues) else []
        ran = "hello" in without_queue.stdout + without_queue.stderr
        error = last_line(without_config.stderr).replace(self.root, "$TMP").replace(VENV, ".bench-venv")
        return (
            f"Plain `studio run trivial.py` exits {without_config.returncode}: "
            f"`{error}`. With the local config but no `--queue` it exits "
            f"{without_queue.returncode}, {'runs' if ran else 'does not run'} the script and leaves "
            f"queue directories {', '.join(f'`{name}`' for name in queued) or 'none'}."
        )

    # -- case 2 ------------------------------------------------------------

    def case_metrics(self):
        points = self.sizes["metric_points"]
        runs = self.sizes["metric_runs"]
        log(f"case 2: {points} scalar points until visible")
        work = self.workdir("case2", {"metrics.py": tensorboard_script(points), "metrics_mlflow.py": mlflow_metrics_script(points)})
        last = float(points - 1)
        tools = []
        samples = {}
        studio = Studio(self.studio_binary, self.root, self.python, "case2")
        studio.start()
        studio_notes = {}

        tensorboard_ready = run([self.python, "-c", "import tensorboardX"], check=False).returncode == 0

        def studio_scalars(key):
            status, body = http_json(studio.port, "GET", f"/api/v1/experiments/{key}/scalars")
            if status == 404 and "no route" in str(body):
                raise FeatureMissing("the scalars route")
            if status != 200:
                return None
            series = body.get("loss") or []
            return len(series) == points and series[-1][2] == last

        def through_studio():
            key = f"metrics_{uuid.uuid4().hex[:8]}"
            start = time.perf_counter()
            run(studio.command("run", "-e", key, "--metric", "loss", "metrics.py"), env=studio.env, cwd=work)
            if not wait_until(lambda: studio_scalars(key)):
                raise BenchError(f"the scalars route never showed {points} points of loss for {key}")
            visible = time.perf_counter() - start
            metric = wait_until(lambda: studio.experiment(key).get("metric_value") == last, timeout=10)
            metric_seconds = time.perf_counter() - start if metric else None
            studio.settle(key)
            samples.setdefault("Studio metric_value", [])
            if metric_seconds is not None:
                samples["Studio metric_value"].append(metric_seconds)
            return visible

        if not tensorboard_ready:
            studio_notes["Studio"] = f"tensorboardX is not installed for {self.python}"
        else:
            tools.append(("Studio", through_studio))

        if self.peer("guild"):
            guild = Guild(self.venv_bin, self.root, "case2")

            def guild_visible():
                info = run(guild.command("runs", "info", "--all-scalars"), env=guild.env, cwd=work).stdout
                block = re.search(r"^  loss:\n((?:    .*\n?)+)", info, re.MULTILINE)
                if not block:
                    return False
                count = re.search(r"avg: \S+ \(step (\d+)\)", block.group(1))
                final = re.search(r"last: (\S+) \(step (\d+)\)", block.group(1))
                return bool(count and final and int(count.group(1)) == points and float(final.group(1)) == last)

            def through_guild():
                start = time.perf_counter()
                run(guild.command("run", "-y", "metrics.py"), env=guild.env, cwd=work)
                if not wait_until(guild_visible, interval=0.2):
                    raise BenchError(f"guild runs info never showed {points} points of loss")
                return time.perf_counter() - start

            tools.append(("Guild AI", through_guild))

        if self.peer("mlflow"):
            server = self.mlflow_server()

            def history_complete(run_id):
                values = []
                token = None
                while True:
                    query = f"metrics/get-history?run_id={run_id}&metric_key=loss&max_results=25000"
                    if token:
                        query += f"&page_token={token}"
                    answer = server.api("GET", query)
                    values.extend(answer.get("metrics", []))
                    token = answer.get("next_page_token")
                    if not token:
                        break
                return len(values) == points and max(metric["step"] for metric in values) == points - 1

            def through_mlflow():
                start = time.perf_counter()
                completed = run([os.path.join(self.venv_bin, "python"), "metrics_mlflow.py"], env=server.env, cwd=work)
                found = re.search(r"^run_id (\w+)$", completed.stdout, re.MULTILINE)
                if not found:
                    raise BenchError(f"metrics_mlflow.py printed no run id: {completed.stdout!r}")
                run_id = found.group(1)
                if not wait_until(lambda: history_complete(run_id)):
                    raise BenchError(f"MLflow never returned {points} points for run {run_id}")
                return time.perf_counter() - start

            tools.append(("MLflow", through_mlflow))

        missing = None
        try:
            for index in range(runs):
                for name, measure in rotated(tools, index):
                    if name == "Studio" and missing is not None:
                        continue
                    try:
                        samples.setdefault(name, []).append(measure())
                    except FeatureMissing as error:
                        missing = error
        finally:
            studio.stop()

        group = f"{points} points visible"
        if missing is not None:
            self.results.add(2, group, "Studio", "`studio run --metric loss metrics.py` until the scalars route has every point",
                             note=f"{NOT_IN_BUILD}: {missing}")
        elif "Studio" in studio_notes:
            self.results.add(2, group, "Studio", "`studio run --metric loss metrics.py`", note=studio_notes["Studio"])
        else:
            self.results.add(2, group, "Studio", "`studio run --metric loss metrics.py` until `GET /api/v1/experiments/{key}/scalars` has every point",
                             samples["Studio"])
            metric_samples = samples.get("Studio metric_value") or []
            self.results.add(2, group + " (metric_value)", "Studio",
                             "same run, until the experiment's `metric_value` is the last point",
                             metric_samples, "" if metric_samples else f"{NOT_IN_BUILD}: `metric_value` stayed empty")
        if self.peer("guild"):
            self.results.add(2, group, "Guild AI", "`guild run -y metrics.py` until `guild runs info --all-scalars` shows every point", samples["Guild AI"])
        if self.peer("mlflow"):
            self.results.add(2, group, "MLflow", "`metrics_mlflow.py` (`log_batch` of 1,000) until REST `metrics/get-history` returns every point", samples["MLflow"])
        if self.peer("studioml"):
            self.results.add(2, group, "StudioML 0.0.49", "—",
                             note="cannot: 0.0.49 never computes `--metric` (`get_experiment_metric` is never called)")

    # -- case 3 ------------------------------------------------------------

    def case_listing(self):
        count = self.sizes["listing_count"]
        runs = self.sizes["listing_runs"]
        log(f"case 3: listing {count} finished experiments")
        work = self.workdir("case3", {"trivial.py": trivial_script(), "trivial_mlflow.py": mlflow_trivial_script()})
        tools = []
        samples = {}
        notes = {}

        studio = Studio(self.studio_binary, self.root, self.python, "case3")
        generator = os.path.join(os.path.dirname(self.studio_binary), "bench_fill_store")
        if not os.path.exists(generator):
            raise BenchError(f"{generator} is missing: build it with `cargo build` (package studio-tests)")
        studio.start()
        template = f"listing_{uuid.uuid4().hex[:8]}"
        run(studio.command("run", "-e", template, "trivial.py"), env=studio.env, cwd=work)
        studio.settle(template)
        studio.stop()
        seconds, _ = timed([generator, studio.home, template, str(count - 1)])
        notes["Studio"] = (f"one real `studio run`, its events appended again under new keys "
                           f"{count - 1} times by `bench_fill_store` in {seconds:.1f} s")
        studio.start()

        def studio_list():
            seconds, completed = timed(studio.command("runs", "list", "all", "--json"), env=studio.env)
            listed = len(json.loads(completed.stdout))
            if listed != count:
                raise BenchError(f"studio runs list all --json listed {listed} of {count}")
            return seconds

        def studio_first_page():
            start = time.perf_counter()
            status, body = http_json(studio.port, "GET", "/api/v1/experiments?limit=100")
            seconds = time.perf_counter() - start
            if status != 200 or len(body["experiments"]) != 100 and count >= 100:
                raise BenchError(f"GET /api/v1/experiments?limit=100: {status}")
            return seconds

        tools.append(("Studio", studio_list, "list all"))
        tools.append(("Studio", studio_first_page, "first page of 100"))

        if self.peer("guild"):
            guild = Guild(self.venv_bin, self.root, "case3")
            seconds = self.fill_guild(guild, work, count)
            notes["Guild AI"] = (f"one real `guild run`, its run directory copied with new ids "
                                 f"{count - 1} times in {seconds:.1f} s")

            def guild_list():
                seconds, completed = timed(guild.command("runs", "--all"), env=guild.env, cwd=work)
                listed = sum(1 for line in completed.stdout.splitlines() if line.startswith("["))
                if listed != count:
                    raise BenchError(f"guild runs --all listed {listed} of {count}")
                return seconds

            tools.append(("Guild AI", guild_list, "list all"))

        if self.peer("mlflow"):
            server = self.mlflow_server()
            experiment_id, seconds = self.fill_mlflow(server, work, count)
            notes["MLflow"] = (f"one real run (`mlflow.start_run`), its rows copied with new ids "
                               f"{count - 1} times in SQLite in {seconds:.1f} s")
            lister = os.path.join(work, "list_mlflow.py")
            write(lister, (
                "import sys\n"
                "from mlflow.tracking import MlflowClient\n"
                "client = MlflowClient()\n"
                "runs, token = [], None\n"
                "while True:\n"
                "    page = client.search_runs([sys.argv[1]], max_results=1000, page_token=token)\n"
                "    runs.extend(page)\n"
                "    token = page.token\n"
                "    if not token:\n"
                "        break\n"
                "print(len(runs))\n"
            ))

            def mlflow_list():
                seconds, completed = timed([os.path.join(self.venv_bin, "python"), lister, experiment_id], env=server.env)
                listed = int(last_line(completed.stdout))
                if listed != count:
                    raise BenchError(f"MLflow search_runs listed {listed} of {count}")
                return seconds

            def mlflow_first_page():
                start = time.perf_counter()
                answer = server.api("POST", "runs/search", {"experiment_ids": [experiment_id], "max_results": 100})
                seconds = time.perf_counter() - start
                if len(answer.get("runs", [])) != min(100, count):
                    raise BenchError("MLflow runs/search returned a short first page")
                return seconds

            tools.append(("MLflow", mlflow_list, "list all"))
            tools.append(("MLflow", mlflow_first_page, "first page of 100"))

        try:
            for index in range(runs):
                for name, measure, group in rotated(tools, index):
                    samples.setdefault((name, group), []).append(measure())
        finally:
            studio.stop()

        self.results.add(3, "list all", "Studio", "`studio runs list all --json`", samples[("Studio", "list all")], notes["Studio"])
        if self.peer("guild"):
            self.results.add(3, "list all", "Guild AI", "`guild runs --all`", samples[("Guild AI", "list all")], notes["Guild AI"])
        if self.peer("mlflow"):
            self.results.add(3, "list all", "MLflow", "`MlflowClient.search_runs` pages of 1,000 (new process)",
                             samples[("MLflow", "list all")], notes["MLflow"])
        if self.peer("studioml"):
            self.results.add(3, "list all", "StudioML 0.0.49", "—",
                             note="cannot: `studio runs list` prints an empty table with a local DB")
        self.results.add(3, "first page of 100", "Studio", "`GET /api/v1/experiments?limit=100` on the HTTP port",
                         samples[("Studio", "first page of 100")])
        if self.peer("guild"):
            self.results.add(3, "first page of 100", "Guild AI", "—", note="no HTTP API; `guild runs` reads every run directory")
        if self.peer("mlflow"):
            self.results.add(3, "first page of 100", "MLflow", "REST `POST runs/search` with `max_results: 100`",
                             samples[("MLflow", "first page of 100")])

    def fill_guild(self, guild, work, count):
        """Make one real run, then copy its directory under new run ids."""
        run(guild.command("run", "-y", "trivial.py"), env=guild.env, cwd=work)
        template = guild.newest_run()
        template_id = os.path.basename(template)
        start = time.perf_counter()
        for _ in range(count - 1):
            new_id = uuid.uuid4().hex
            target = os.path.join(guild.runs_dir(), new_id)
            shutil.copytree(template, target, symlinks=True)
            with open(os.path.join(target, ".guild", "attrs", "id"), "w") as handle:
                handle.write(new_id)
        seconds = time.perf_counter() - start
        if len(os.listdir(guild.runs_dir())) != count:
            raise BenchError("Guild store has the wrong number of runs")
        log(f"Guild store: {count} runs from {template_id}")
        return seconds

    def fill_mlflow(self, server, work, count):
        """Make one real run in a new experiment, then copy its rows."""
        name = f"listing-{uuid.uuid4().hex[:8]}"
        experiment_id = server.api("POST", "experiments/create", {"name": name})["experiment_id"]
        env = dict(server.env, MLFLOW_EXPERIMENT_ID=experiment_id)
        run([os.path.join(self.venv_bin, "python"), "trivial_mlflow.py"], env=env, cwd=work)
        template = server.api("POST", "runs/search", {"experiment_ids": [experiment_id]})["runs"][0]["info"]["run_id"]
        start = time.perf_counter()
        database = sqlite3.connect(server.database, timeout=60)
        try:
            # Every table with a run_uuid column: runs, tags, params,
            # metrics and latest_metrics in MLflow 3.
            copies = []
            for (table,) in database.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
                columns = [column[1] for column in database.execute(f"PRAGMA table_info({table})")]
                if "run_uuid" not in columns:
                    continue
                rows = database.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE run_uuid = ?", (template,)).fetchall()
                insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
                copies.append((insert, rows))
            with database:
                for _ in range(count - 1):
                    new_id = uuid.uuid4().hex
                    for insert, rows in copies:
                        for row in rows:
                            database.execute(insert, [
                                value.replace(template, new_id) if isinstance(value, str) else value
                                for value in row
                            ])
        finally:
            database.close()
        return experiment_id, time.perf_counter() - start

    # -- case 4 ------------------------------------------------------------

    def case_snapshot(self):
        sizes = self.sizes
        log("case 4: workspace snapshot")
        work = os.path.join(self.root, "case4", "workspace")
        total = self.make_workspace(work)
        described = (f"{sizes['small_files']} files of {sizes['small_file_bytes'] // 1024} KiB + "
                     f"{sizes['large_files']} of {mib(sizes['large_file_bytes'])}, {mib(total)} in all")
        log(f"workspace: {described}")
        out = os.path.join(self.root, "case4", "out")
        os.makedirs(out, exist_ok=True)

        # tar czf: the floor.
        tar_samples = {}
        for group in ("first", "unchanged"):
            target = os.path.join(out, f"{group}.tar.gz")
            seconds, _ = timed(["tar", "czf", target, "-C", work, "."])
            tar_samples[group] = [seconds]
            tar_size = os.path.getsize(target)
            os.remove(target)

        # Studio's workspace artifact.
        studio = Studio(self.studio_binary, self.root, self.python, "case4")
        studio.start()
        studio_rows = {}
        try:
            for group in ("first", "unchanged"):
                key = f"snapshot_{group}_{uuid.uuid4().hex[:6]}"
                seconds, _ = timed(studio.command("run", "-e", key, "trivial.py"), env=studio.env, cwd=work)
                experiment = studio.experiment(key)
                artifact = (experiment.get("artifacts") or {}).get("workspace")
                if artifact is None:
                    studio_rows = None
                    break
                studio.settle(key)
                studio_rows[group] = ([seconds], f"stored {artifact.get('files')} files, {mib(artifact.get('size', 0))} packed")
        finally:
            studio.stop()

        guild_rows = {}
        if self.peer("guild"):
            guild = Guild(self.venv_bin, self.root, "case4")
            for group in ("first", "unchanged"):
                seconds, _ = timed(guild.command("run", "-y", "trivial.py"), env=guild.env, cwd=work)
                files, size = directory_size(guild.newest_run(), skip=".guild")
                guild_rows[group] = ([seconds], f"copied {files} files, {mib(size)}: Guild's default source-code rules skip large files and stop at 100 files")

        studioml_rows = {}
        if self.peer("studioml"):
            # Last: it deletes the working directory and extracts its copy
            # back, which must not disturb the other tools.
            studioml = StudioML(self.venv_bin, self.root, "case4")
            for group in ("first", "unchanged"):
                before = studioml.blob_bytes()
                seconds, completed = timed(studioml.run_command("trivial.py"), env=studioml.env, cwd=work, check=False)
                added = studioml.blob_bytes() - before
                if "hello" not in completed.stdout + completed.stderr:
                    raise BenchError(f"StudioML did not run the script: {last_line(completed.stderr)}")
                studioml_rows[group] = ([seconds], f"stored {mib(added)} (uncompressed tar); deletes and re-extracts the working directory")

        for group in ("first", "unchanged"):
            label = f"snapshot, {group}"
            if studio_rows is None:
                self.results.add(4, label, "Studio", "`studio run trivial.py` in the workspace", note=f"{NOT_IN_BUILD}: no `workspace` artifact")
            else:
                secs, note = studio_rows[group]
                self.results.add(4, label, "Studio", "`studio run trivial.py` in the workspace (snapshot included)", secs, note)
            if self.peer("guild"):
                secs, note = guild_rows[group]
                self.results.add(4, label, "Guild AI", "`guild run -y trivial.py` in the workspace", secs, note)
            if self.peer("studioml"):
                secs, note = studioml_rows[group]
                self.results.add(4, label, "StudioML 0.0.49", "`studio run ... trivial.py` in the workspace", secs, note)
            if self.peer("mlflow"):
                self.results.add(4, label, "MLflow", "—", note="no workspace snapshot: code is logged only by MLflow Projects or explicit `log_artifacts`")
            self.results.add(4, label, "tar czf", "`tar czf out.tar.gz -C workspace .`", tar_samples[group], f"{mib(tar_size)} compressed; no change detection")
        self.results.footnotes.append(f"Case 4 workspace: {described}.")

    def make_workspace(self, path):
        sizes = self.sizes
        write(os.path.join(path, "trivial.py"), trivial_script())
        total = 0
        per_directory = 256
        for index in range(sizes["small_files"]):
            directory = os.path.join(path, "src", f"d{index // per_directory:03d}")
            os.makedirs(directory, exist_ok=True)
            # Text-like content, so gzip has something to compress.
            data = os.urandom(sizes["small_file_bytes"] * 3 // 4).hex().encode()[: sizes["small_file_bytes"]]
            with open(os.path.join(directory, f"f{index:05d}.txt"), "wb") as handle:
                handle.write(data)
            total += len(data)
        os.makedirs(os.path.join(path, "data"), exist_ok=True)
        chunk = 8 * 1024 * 1024
        for index in range(sizes["large_files"]):
            with open(os.path.join(path, "data", f"large{index}.bin"), "wb") as handle:
                remaining = sizes["large_file_bytes"]
                while remaining > 0:
                    piece = min(chunk, remaining)
                    handle.write(os.urandom(piece))
                    remaining -= piece
            total += sizes["large_file_bytes"]
        return total

    # -- case 5 ------------------------------------------------------------

    def case_grid(self):
        size = self.sizes["grid_size"]
        workers = self.sizes["grid_workers"]
        seconds_each = self.sizes["grid_sleep"]
        runs = self.sizes["grid_runs"]
        log(f"case 5: grid of {size} runs of {seconds_each} s, {workers} workers")
        values = ",".join(str(value) for value in range(1, size + 1))
        work = self.workdir("case5", {"sleep.py": sleep_script(seconds_each)})
        group = f"grid {size} × {seconds_each:g} s, {workers} workers"
        tools = []
        samples = {}
        studio = Studio(self.studio_binary, self.root, self.python, "case5")
        studio.start()
        missing = None

        def through_studio():
            seconds, completed = timed(
                studio.command("run", "--hyperparam", f"x={values}", "--num-workers", str(workers), "sleep.py"),
                env=studio.env, cwd=work, check=False,
            )
            if completed.returncode != 0:
                message = last_line(completed.stderr)
                if "not supported" in message or "unexpected argument" in message:
                    raise FeatureMissing(message)
                raise BenchError(f"studio hyperparameter search failed: {message}")
            if not re.search(rf"\b{size} experiments\b", completed.stderr):
                raise BenchError(f"studio search did not report {size} experiments: {last_line(completed.stderr)}")
            return seconds

        tools.append(("Studio", through_studio))

        if self.peer("guild"):
            guild = Guild(self.venv_bin, self.root, "case5")

            def through_guild():
                before = len(os.listdir(guild.runs_dir())) if os.path.isdir(guild.runs_dir()) else 0
                start = time.perf_counter()
                run(guild.command("run", "-y", "--stage-trials", "sleep.py", f"x=[{values}]"), env=guild.env, cwd=work)
                queues = [
                    subprocess.Popen(guild.command("run", "-y", "queue", "run-once=yes", "poll-interval=1"),
                                     env=guild.env, cwd=work, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    for _ in range(workers)
                ]
                for queue in queues:
                    if queue.wait(timeout=COMMAND_TIMEOUT) != 0:
                        raise BenchError(f"a guild queue exited with {queue.returncode}")
                seconds = time.perf_counter() - start
                completed = run(guild.command("runs", "--all", "-Sc", "-Fo", "sleep.py"), env=guild.env, cwd=work)
                done = sum(1 for line in completed.stdout.splitlines() if line.startswith("["))
                expected = (len(samples.get("Guild AI", [])) + 1) * size
                if done != expected:
                    raise BenchError(f"guild completed {done} sleep.py runs, expected {expected} (had {before} runs before)")
                return seconds

            tools.append(("Guild AI", through_guild))

        try:
            for index in range(runs):
                for name, measure in rotated(tools, index):
                    if name == "Studio" and missing is not None:
                        continue
                    try:
                        samples.setdefault(name, []).append(measure())
                    except FeatureMissing as error:
                        missing = error
        finally:
            studio.stop()

        if missing is not None:
            self.results.add(5, group, "Studio", "`studio run --hyperparam x=... --num-workers 2 sleep.py`", note=f"{NOT_IN_BUILD}: {missing}")
        else:
            self.results.add(5, group, "Studio", f"`studio run --hyperparam x=1,...,{size} --num-workers {workers} sleep.py`", samples["Studio"])
        if self.peer("guild"):
            self.results.add(5, group, "Guild AI", f"`guild run --stage-trials sleep.py x=[1,...,{size}]`, then {workers} × `guild run queue run-once=yes`",
                             samples["Guild AI"], "a plain batch runs its trials one at a time; staged trials plus one queue per worker run in parallel")
        if self.peer("mlflow"):
            self.results.add(5, group, "MLflow", "—", note="cannot: MLflow has no hyperparameter search or run queue")
        if self.peer("studioml"):
            studioml = StudioML(self.venv_bin, self.root, "case5")
            completed = run(studioml.run_command("--hyperparam", f"x=1:{size}", "--num-workers", str(workers), "sleep.py"),
                            env=studioml.env, cwd=work, check=False)
            error = last_line(completed.stderr)
            if completed.returncode == 0:
                error = f"exited 0 unexpectedly: {error}"
            self.results.add(5, group, "StudioML 0.0.49", f"`studio run --queue local --hyperparam x=1:{size} --num-workers {workers} sleep.py`",
                             note=f"cannot: fails at once with `{error}`")


class FeatureMissing(Exception):
    """A Studio feature that this build does not have."""


# ------------------------------------------------------------- set-up


def machine_description():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = "unknown"
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    memory = f"{int(line.split()[1]) / (1024 * 1024):.1f} GiB"
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), {memory} memory, {platform.system()} {platform.release()}"


def target_directory():
    return os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPOSITORY, "target")


def build_studio():
    """Builds the two binaries the cases run with the `peer-bench` profile
    of Cargo.toml: release, with the unused cloud SDKs optimised less."""
    command = ["cargo", "build", "--profile", "peer-bench", "--quiet",
               "-p", "studioctl", "--bin", "studio", "-p", "studio-tests", "--bin", "bench_fill_store"]
    log("building Studio: " + " ".join(command))
    started = time.monotonic()
    subprocess.run(command, cwd=REPOSITORY, check=True, timeout=3600)
    log(f"built in {time.monotonic() - started:.0f} s")
    return os.path.join(target_directory(), "peer-bench", "studio")


def install_peers():
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        log(f"creating {VENV}")
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    installed = subprocess.run(
        [python, "-c", "import guild, mlflow, studio.runner, tensorboardX"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ).returncode == 0
    if not installed:
        log("installing the peers from PyPI: " + " ".join(PEER_PACKAGES))
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PEER_PACKAGES],
                       check=True, timeout=3600)
    return python


def peer_versions(python):
    script = (
        "import importlib.metadata as m, json, sys\n"
        f"print(json.dumps({{name: m.version(name) for name in {PEER_DISTRIBUTIONS!r}}}))\n"
    )
    return json.loads(run([python, "-c", script]).stdout)


def report_header(studio_binary, studio_version, python, versions):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    python_version = last_line(run([python, "--version"]).stdout)
    lines = [
        f"Date: {now}",
        f"Machine: {machine_description()}",
        f"Command: `scripts/bench_peers.py {' '.join(sys.argv[1:])}`".replace("  ", " "),
        f"Studio: {studio_version} ({studio_binary})",
        f"Python for every script: {python_version}",
    ]
    for name, version in versions.items():
        lines.append(f"{name}: {version}")
    return "\n".join(f"- {line}" for line in lines)


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, Studio only, no peer installs and no build (for the tests)")
    parser.add_argument("--studio", help="studio binary to measure (default: build target/peer-bench/studio)")
    parser.add_argument("--cases", default="1,2,3,4,5", help="comma-separated case numbers to run (default all)")
    parser.add_argument("--peers", default="guild,mlflow,studioml",
                        help="comma-separated peers to measure: guild, mlflow, studioml (default all)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory with every home and store")
    return parser.parse_args()


def main():
    args = parse_arguments()
    sizes = SMOKE if args.smoke else FULL
    cases = {int(case) for case in args.cases.split(",") if case.strip()}
    unknown_cases = cases - {1, 2, 3, 4, 5}
    if unknown_cases:
        sys.exit(f"invalid --cases {args.cases!r}: use numbers from 1 to 5, such as 1,3")
    peers = set() if args.smoke else {peer.strip() for peer in args.peers.split(",") if peer.strip()}
    unknown_peers = peers - {"guild", "mlflow", "studioml"}
    if unknown_peers:
        sys.exit(f"invalid --peers {args.peers!r}: use guild, mlflow and studioml")

    if args.studio:
        studio_binary = os.path.abspath(args.studio)
    elif args.smoke:
        studio_binary = os.path.join(target_directory(), "debug", "studio")
    else:
        studio_binary = build_studio()
    if not os.path.exists(studio_binary):
        sys.exit(f"{studio_binary} not found: build it with `cargo build` or pass --studio PATH")

    versions = {}
    if args.smoke:
        python = sys.executable
    else:
        python = install_peers()
        versions = peer_versions(python)

    root = tempfile.mkdtemp(prefix="studio-bench-peers-")
    log(f"working under {root}")
    bench = Bench(args, sizes, studio_binary, python, peers, root)
    studio_version = Studio(studio_binary, root, python, "version").version()
    header = report_header(studio_binary, studio_version, python, versions)
    failures = []
    try:
        for number, method in [(1, bench.case_overhead), (2, bench.case_metrics), (3, bench.case_listing),
                               (4, bench.case_snapshot), (5, bench.case_grid)]:
            if number not in cases:
                continue
            try:
                method()
            except Exception as error:  # noqa: BLE001 - report the case and go on with the others
                failures.append(f"case {number}: {error}")
                log(f"case {number} failed: {error}")
                bench.results.add(number, "—", "—", "—", note=f"failed: {error}")
    finally:
        bench.close()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    print(header)
    print()
    print(bench.results.markdown())
    print()
    print("Studio ÷ tool: below 1 means Studio took less time.")
    for footnote in bench.results.footnotes:
        print(footnote)
    if failures:
        for failure in failures:
            print(f"FAILED {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
