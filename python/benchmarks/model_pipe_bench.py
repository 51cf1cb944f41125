#!/usr/bin/env python3
"""Benchmark ModelPipe against one-by-one inference over URLs of images.

The three rows follow the model-pipe table of the StudioML 2018 docs: one URL
at a time, a pipe with batch 64 and 4 fetch workers, and a pipe with batch
128 and 32 fetch workers. Everything runs on this machine:

* A subprocess of this script runs ``http.server.ThreadingHTTPServer`` on a
  free port of 127.0.0.1. It serves N generated PNG images at
  ``/images/<i>.png`` and waits ``--delay`` seconds before each response,
  like a remote server. A share ``--missing`` of the URLs respond with 404,
  and a share ``--broken`` respond with 200 and bytes that are not an image.
* The model is a Keras-style object. Its ``predict(batch)`` computes class
  probabilities with numpy (a linear layer and a softmax), then sleeps
  ``--model-fixed + --model-per-item * len(batch)`` seconds. The sleep
  stands for the time a host thread waits for a GPU: it holds no CPU and
  releases the GIL. Burning that time on the CPU instead would mostly
  measure how fetch threads and model share the cores.
* Every row maps each URL to a predicted label: fetch, decode with Pillow,
  resize to the model input, predict, argmax. One-by-one is a plain loop
  that skips URLs that raise. The pipe rows are a ModelPipe with
  ``num_workers`` fetch threads and one model worker that takes batches of
  up to ``batch_size`` items. All rows must return the same labels.

Lower bound of each row, in seconds, with n URLs, n_ok of them images, delay
d, model cost F per call plus c per item, W fetch workers and batch size B::

    one-by-one:  n*d + n_ok*(F + c)
    pipe:        max(ceil(n/W)*d, d + ceil(n_ok/B)*F + n_ok*c)

One-by-one waits for every request and every model call in turn. In a pipe,
W requests run at once and each takes d, so fetching takes at least
ceil(n/W) rounds. The model cannot start before the first response arrives,
and it needs at least ceil(n_ok/B) calls. The bound leaves out the CPU time
of HTTP, decoding, resizing and the pipe itself; the ratio of the measured
time to the bound shows that overhead.

The default delay (25 ms) and model cost (20 ms per call plus 0.05 ms per
item) make the fetch stage of the 32-worker pipe the bottleneck: its bound
is 0.78 ms per URL, against 0.21 ms per URL for the model with batches of
128. In a run on a 2-core machine (docs/benchmarks-model-pipe.md) the
client used about 0.5 ms of CPU time per URL, so a much shorter delay would
measure the CPU instead of the pipe.

The model worker takes every item already queued, up to the batch size, so
batches stay smaller than 128 while the model keeps up with the fetchers.
The table reports the model calls and the mean batch size of each row.

Usage: ``python benchmarks/model_pipe_bench.py [--n 7000] [--check]``.
"""

import argparse
import collections
import http.client
import http.server
import io
import logging
import math
import os
import platform
import random
import subprocess
import sys
import threading
import time
import urllib.parse

import numpy as np
from PIL import Image

try:
    from studio.model_util import ModelPipe, resize_to_model_input
except ImportError:
    # Running from a source checkout without `pip install ./python`.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from studio.model_util import ModelPipe, resize_to_model_input

MODEL_INPUT_SHAPE = (32, 32, 3)
CLASS_COUNT = 10
REQUIRED_SPEEDUP = 40.0
MAX_TIME_TO_BOUND = 1.5
SERVER_START_TIMEOUT_S = 60.0

Row = collections.namedtuple(
    "Row",
    "name seconds bound_seconds labels dropped errors model_calls model_items",
)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Compare ModelPipe with one-by-one inference on images "
        "served by a local HTTP server."
    )
    parser.add_argument("--n", type=int, default=7000, help="number of URLs (default 7000)")
    parser.add_argument(
        "--delay",
        type=float,
        default=0.025,
        help="seconds the server waits before each response (default 0.025)",
    )
    parser.add_argument(
        "--model-fixed",
        type=float,
        default=0.020,
        help="seconds each model call takes regardless of batch size (default 0.020)",
    )
    parser.add_argument(
        "--model-per-item",
        type=float,
        default=0.00005,
        help="seconds each model call takes per item of the batch (default 0.00005)",
    )
    parser.add_argument(
        "--missing",
        type=float,
        default=0.05,
        help="share of URLs that respond with 404 (default 0.05)",
    )
    parser.add_argument(
        "--broken",
        type=float,
        default=0.05,
        help="share of URLs that serve bytes that are not an image (default 0.05)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for images and URL roles")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit with status 1 unless the batch-128 pipe is at least 40 times "
        "faster than one-by-one and within 1.5 times its bound",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.n < 1:
        parser.error("--n must be at least 1, got {}".format(args.n))
    for name in ("delay", "model_fixed", "model_per_item"):
        if getattr(args, name) < 0:
            parser.error("--{} must not be negative".format(name.replace("_", "-")))
    for name in ("missing", "broken"):
        if not 0 <= getattr(args, name) <= 1:
            parser.error("--{} must be between 0 and 1".format(name))
    if args.missing + args.broken > 1:
        parser.error("--missing plus --broken must not exceed 1")
    return args


def assign_url_roles(n, missing_share, broken_share, seed):
    """Return a list with the role of each URL: "ok", "missing" or "broken"."""
    missing_count = round(n * missing_share)
    broken_count = round(n * broken_share)
    indices = random.Random(seed).sample(range(n), missing_count + broken_count)
    roles = ["ok"] * n
    for index in indices[:missing_count]:
        roles[index] = "missing"
    for index in indices[missing_count:]:
        roles[index] = "broken"
    return roles


def generate_image(index, seed):
    """Return PNG bytes of a blocky random image of 40 to 64 pixels a side."""
    rng = np.random.default_rng([seed, index])
    blocks = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    size = int(rng.integers(40, 65))
    image = Image.fromarray(blocks).resize((size, size), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def serve(args):
    """Serve the images on a free port of 127.0.0.1 until terminated.

    Prints ``READY <port>`` once the server accepts connections.
    """
    roles = assign_url_roles(args.n, args.missing, args.broken, args.seed)
    bodies = {}
    for index, role in enumerate(roles):
        if role == "ok":
            bodies[index] = generate_image(index, args.seed)
        elif role == "broken":
            junk = np.random.default_rng([args.seed, index]).bytes(512)
            bodies[index] = b"\x89PNG\r\n\x1a\n" + junk

    class ImageHandler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Without TCP_NODELAY, Nagle's algorithm holds the body, written after
        # the headers, until the client's delayed ACK arrives. On a 2-core
        # machine that tripled the time per URL of the 32-worker pipe.
        disable_nagle_algorithm = True

        def do_GET(self):
            time.sleep(args.delay)
            body = None
            name = self.path.rsplit("/", 1)[-1]
            if self.path.startswith("/images/") and name.endswith(".png"):
                try:
                    body = bodies.get(int(name[: -len(".png")]))
                except ValueError:
                    body = None
            if body is None:
                self._respond(404, "text/plain", b"not found\n")
            else:
                self._respond(200, "image/png", body)

        def _respond(self, status, content_type, body):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *log_args):
            pass

    class ImageServer(http.server.ThreadingHTTPServer):
        daemon_threads = True
        # 32 workers connect at once, and the default listen backlog of 5
        # could make some of them wait for a TCP retransmission.
        request_queue_size = 128

    server = ImageServer(("127.0.0.1", 0), ImageHandler)
    print("READY {}".format(server.server_address[1]), flush=True)
    server.serve_forever()


class ServerProcess:
    """Image server subprocess, stopped by PID when the context exits."""

    def __init__(self, args):
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--serve",
            "--n", str(args.n),
            "--delay", str(args.delay),
            "--missing", str(args.missing),
            "--broken", str(args.broken),
            "--seed", str(args.seed),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.port = self._read_port()

    def _read_port(self):
        lines = []
        reader = threading.Thread(
            target=lambda: lines.append(self.process.stdout.readline()), daemon=True
        )
        reader.start()
        reader.join(SERVER_START_TIMEOUT_S)
        line = lines[0] if lines else ""
        if not line.startswith("READY "):
            self.close()
            raise RuntimeError(
                "image server did not start within {} s (output: {!r})".format(
                    SERVER_START_TIMEOUT_S, line
                )
            )
        return int(line.split()[1])

    def close(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class FetchError(OSError):
    """Error for a GET request that returned a status other than 200."""


class Fetcher:
    """Callable that fetches a URL over one kept-alive HTTP connection per thread."""

    def __init__(self, timeout_s=30.0):
        self._timeout_s = timeout_s
        self._local = threading.local()

    def __call__(self, url):
        parts = urllib.parse.urlsplit(url)
        for attempt in (1, 2):
            connection = self._connection(parts.netloc)
            try:
                connection.request("GET", parts.path)
                response = connection.getresponse()
                body = response.read()
            except (http.client.HTTPException, ConnectionError):
                # Retry once, because the server may have closed the kept-alive
                # connection.
                self._local.connections.pop(parts.netloc).close()
                if attempt == 2:
                    raise
                continue
            if response.status != 200:
                raise FetchError("GET {} failed with status {}".format(url, response.status))
            return body

    def _connection(self, netloc):
        connections = getattr(self._local, "connections", None)
        if connections is None:
            connections = self._local.connections = {}
        if netloc not in connections:
            connections[netloc] = http.client.HTTPConnection(netloc, timeout=self._timeout_s)
        return connections[netloc]


class SimulatedModel:
    """Keras-style image classifier whose call time imitates a GPU.

    ``predict`` takes a batch of shape ``(batch,) + input_shape[1:]`` and
    returns class probabilities of shape ``(batch, classes)``. Each call
    sleeps ``fixed_s + per_item_s * batch`` seconds, see the module docstring.
    """

    def __init__(self, fixed_s, per_item_s, seed):
        self.input_shape = (None,) + MODEL_INPUT_SHAPE
        self.fixed_s = fixed_s
        self.per_item_s = per_item_s
        rng = np.random.default_rng(seed)
        self.weights = rng.standard_normal((int(np.prod(MODEL_INPUT_SHAPE)), CLASS_COUNT))
        self._counter_lock = threading.Lock()
        self.calls = 0
        self.items = 0

    def predict(self, batch):
        batch = np.asarray(batch, dtype=np.float64)
        logits = batch.reshape(len(batch), -1) @ self.weights
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        time.sleep(self.fixed_s + self.per_item_s * len(batch))
        with self._counter_lock:
            self.calls += 1
            self.items += len(batch)
        return probabilities

    def take_counts(self):
        """Return ``(calls, items)`` since the previous call and reset them."""
        with self._counter_lock:
            counts = (self.calls, self.items)
            self.calls = 0
            self.items = 0
        return counts


def decode_image(data):
    return Image.open(io.BytesIO(data))


def argmax_rows(probabilities):
    return np.argmax(probabilities, axis=1)


def run_one_by_one(urls, model):
    fetch = Fetcher()
    resize = resize_to_model_input(model)
    labels = {}
    errors = collections.Counter()
    for url in urls:
        try:
            tensor = resize(decode_image(fetch(url)))
            labels[url] = int(argmax_rows(model.predict(tensor))[0])
        except Exception as error:
            errors[type(error).__name__] += 1
    return labels, errors


def run_pipe(urls, model, batch_size, workers):
    pipe = ModelPipe()
    pipe.add(Fetcher(), num_workers=workers)
    pipe.add(decode_image)
    pipe.add(resize_to_model_input(model))
    pipe.add(model, num_workers=1, batch_size=batch_size, batcher=np.vstack)
    pipe.add(argmax_rows)
    labels = pipe({url: url for url in urls})
    return {url: int(label) for url, label in labels.items()}, collections.Counter(pipe.errors)


def one_by_one_bound(n, n_ok, args):
    return n * args.delay + n_ok * (args.model_fixed + args.model_per_item)


def pipe_bound(n, n_ok, args, batch_size, workers):
    fetch_bound = math.ceil(n / workers) * args.delay
    model_bound = (
        args.delay
        + math.ceil(n_ok / batch_size) * args.model_fixed
        + n_ok * args.model_per_item
    )
    return max(fetch_bound, model_bound)


def run_benchmark(args):
    roles = assign_url_roles(args.n, args.missing, args.broken, args.seed)
    n_ok = roles.count("ok")
    model = SimulatedModel(args.model_fixed, args.model_per_item, args.seed)
    rows = []

    with ServerProcess(args) as server:
        urls = [
            "http://127.0.0.1:{}/images/{}.png".format(server.port, index)
            for index in range(args.n)
        ]

        start = time.perf_counter()
        labels, errors = run_one_by_one(urls, model)
        seconds = time.perf_counter() - start
        rows.append(
            Row(
                "One-by-one", seconds, one_by_one_bound(args.n, n_ok, args),
                labels, sum(errors.values()), errors, *model.take_counts()
            )
        )

        for batch_size, workers in ((64, 4), (128, 32)):
            start = time.perf_counter()
            labels, errors = run_pipe(urls, model, batch_size, workers)
            seconds = time.perf_counter() - start
            rows.append(
                Row(
                    "Pipe (batch {}, workers {})".format(batch_size, workers),
                    seconds, pipe_bound(args.n, n_ok, args, batch_size, workers),
                    labels, sum(errors.values()), errors, *model.take_counts()
                )
            )
    return rows, n_ok


def print_report(args, rows, n_ok):
    print(
        "URLs: {} ({} images, {} missing, {} broken); server delay {:g} ms; model "
        "{:g} ms per call + {:g} ms per item".format(
            args.n, n_ok,
            round(args.n * args.missing), round(args.n * args.broken),
            args.delay * 1e3, args.model_fixed * 1e3, args.model_per_item * 1e3,
        )
    )
    print(
        "Python {}, numpy {}, Pillow {}, {} CPUs".format(
            platform.python_version(), np.__version__, Image.__version__, os.cpu_count()
        )
    )
    print()

    print(
        "| Experiment | Time (s) | Time per URL (s) | Bound (s) | Time / bound "
        "| Labels | Dropped | Model calls | Mean batch |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            "| {} | {:.2f} | {:.5f} | {:.2f} | {:.2f} | {} | {} | {} | {:.1f} |".format(
                row.name, row.seconds, row.seconds / args.n, row.bound_seconds,
                row.seconds / row.bound_seconds if row.bound_seconds else float("nan"),
                len(row.labels), row.dropped, row.model_calls,
                row.model_items / row.model_calls if row.model_calls else 0.0,
            )
        )
    print()

    reference = rows[0]
    for row in rows[1:]:
        if row.labels != reference.labels:
            differing = sum(
                1 for url in set(row.labels) | set(reference.labels)
                if row.labels.get(url) != reference.labels.get(url)
            )
            print("WARNING: {} differs from one-by-one on {} URLs".format(row.name, differing))
    print(
        "Errors by kind: "
        + "; ".join("{}: {}".format(row.name, dict(row.errors)) for row in rows)
    )

    fastest = rows[-1]
    speedup = reference.seconds / fastest.seconds
    time_to_bound = fastest.seconds / fastest.bound_seconds
    speedup_met = speedup >= REQUIRED_SPEEDUP
    bound_met = time_to_bound <= MAX_TIME_TO_BOUND
    print(
        "{} vs one-by-one: {:.1f} times faster (required: at least {:g}) -> {}".format(
            fastest.name, speedup, REQUIRED_SPEEDUP, "met" if speedup_met else "NOT met"
        )
    )
    print(
        "{}: {:.2f} times its bound (required: at most {:g}) -> {}".format(
            fastest.name, time_to_bound, MAX_TIME_TO_BOUND, "met" if bound_met else "NOT met"
        )
    )
    labels_match = all(row.labels == reference.labels for row in rows)
    return speedup_met and bound_met and labels_match


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.serve:
        serve(args)
        return 0

    # The rows report error counts; per-kind warnings would only repeat them.
    logging.getLogger("studio.model_util").setLevel(logging.ERROR)
    rows, n_ok = run_benchmark(args)
    requirements_met = print_report(args, rows, n_ok)
    if args.check and not requirements_met:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
