#!/usr/bin/env python3
"""Measure what `studio run` adds to a trivial script, and studiod's memory.

Runs `python3 trivial.py` and `studio run trivial.py` alternately, N times
each, against a warm daemon on a private STUDIOML_HOME, and prints the
median and 90th percentile wall times, their difference, and the resident
memory (VmRSS) of studiod when idle before and after the runs.

Usage: scripts/bench_run_overhead.py [--runs N] [--studio PATH]
(default: target/release/studio; build it with `cargo build --release`).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def daemon_pid(home):
    with open(os.path.join(home, "studiod.lock")) as lock:
        return int(lock.read().strip())


def timed(command, env, cwd):
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="runs per tool (default 50)")
    parser.add_argument("--studio", default="target/release/studio", help="studio binary")
    args = parser.parse_args()

    studio = os.path.abspath(args.studio)
    if not os.path.exists(studio):
        sys.exit(f"{studio} not found: build it with `cargo build --release`")
    python = shutil.which("python3")
    root = tempfile.mkdtemp(prefix="studio-bench-")
    home = os.path.join(root, "studio-home")
    work = os.path.join(root, "work")
    os.makedirs(work)
    with open(os.path.join(work, "trivial.py"), "w") as script:
        script.write("pass\n")
    env = dict(os.environ, STUDIOML_HOME=home, STUDIOML_HTTP="off")

    try:
        subprocess.run([studio, "daemon", "start"], env=env, check=True, stdout=subprocess.DEVNULL)
        pid = daemon_pid(home)
        time.sleep(1)
        idle_before = rss_kib(pid)
        # Warm both paths once before measuring.
        timed([python, "trivial.py"], env, work)
        timed([studio, "run", "trivial.py"], env, work)

        bare, through_studio = [], []
        for _ in range(args.runs):
            bare.append(timed([python, "trivial.py"], env, work))
            through_studio.append(timed([studio, "run", "trivial.py"], env, work))
        time.sleep(3)  # let pip freeze probes of the last runs finish
        idle_after = rss_kib(pid)
    finally:
        subprocess.run([studio, "daemon", "stop"], env=env, stdout=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)

    bare_median = statistics.median(bare)
    studio_median = statistics.median(through_studio)
    print(f"runs per tool: {args.runs}")
    print("| command | median | p90 |")
    print("|---|---|---|")
    print(f"| python3 trivial.py | {bare_median * 1000:.1f} ms | {percentile(bare, 0.9) * 1000:.1f} ms |")
    print(f"| studio run trivial.py | {studio_median * 1000:.1f} ms | {percentile(through_studio, 0.9) * 1000:.1f} ms |")
    print(f"| difference (studio - python3) | {(studio_median - bare_median) * 1000:.1f} ms | |")
    print()
    print(f"studiod idle RSS: {idle_before / 1024:.1f} MiB at start, "
          f"{idle_after / 1024:.1f} MiB after {args.runs + 1} experiments")


if __name__ == "__main__":
    main()
