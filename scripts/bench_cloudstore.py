#!/usr/bin/env python3
"""Benchmark: upload 1 GiB to moto's S3 server through Studio's S3 store
and through boto3's upload_file, alternating, and print the medians.

Usage: .venv/bin/python scripts/bench_cloudstore.py [--size-mib 1024] [--runs 3]
Builds the `bench_s3_put` example in release mode first (CARGO_TARGET_DIR is
honoured). Everything runs on 127.0.0.1.
"""

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3

REPOSITORY = Path(__file__).resolve().parent.parent
SECRET = "bench-secret"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"moto_server did not answer on {url} within {timeout} s")


def reset(endpoint):
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request).close()


def write_file(path, size):
    digest = hashlib.sha256()
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as file:
        for index in range(size // len(block)):
            # Vary each block so no layer can deduplicate them.
            chunk = index.to_bytes(8, "little") + block[8:]
            file.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()

    target = Path(os.environ.get("CARGO_TARGET_DIR", REPOSITORY / "target"))
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "-p", "studiod", "--example", "bench_s3_put"],
        cwd=REPOSITORY,
        check=True,
    )
    binary = target / "release" / "examples" / "bench_s3_put"

    moto = shutil.which("moto_server") or str(REPOSITORY / ".venv" / "bin" / "moto_server")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    environment = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    os.environ.update(environment)
    server = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"{endpoint}/moto-api/")
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "blob"
            size = arguments.size_mib * 1024 * 1024
            digest = write_file(path, size)
            client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            studio_times, boto_times = [], []
            for _ in range(arguments.runs):
                reset(endpoint)
                output = subprocess.run(
                    [str(binary), endpoint, "bench", str(path), digest],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=environment,
                )
                studio_times.append(float(output.stdout.strip()))

                reset(endpoint)
                client.create_bucket(Bucket="bench")
                started = time.perf_counter()
                client.upload_file(str(path), "bench", "blob")
                boto_times.append(time.perf_counter() - started)
    finally:
        server.terminate()
        server.wait()

    studio = statistics.median(studio_times)
    boto = statistics.median(boto_times)
    mib = size / (1024 * 1024)
    print(f"size: {mib:.0f} MiB, runs: {arguments.runs}")
    print(f"studio S3Store.put: median {studio:.2f} s ({mib / studio:.0f} MiB/s), all {studio_times}")
    print(f"boto3 upload_file:  median {boto:.2f} s ({mib / boto:.0f} MiB/s), all {boto_times}")
    print(f"ratio studio / boto3: {studio / boto:.2f}")


if __name__ == "__main__":
    main()
