"""Fixtures for the dashboard's browser tests: a private studiod started
through the built `studio` binary, and headless Chromium driven by
Debian's chromedriver (`scripts/test.sh` installs both packages)."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
TIMEOUT = 60


def studio_binary() -> Path:
    """`studio` from STUDIO_BIN, else from the cargo target directory."""
    if "STUDIO_BIN" in os.environ:
        return Path(os.environ["STUDIO_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPOSITORY / "target"))
    return target / "debug" / "studio"


class Studio:
    """A private Studio installation: HOME, Studio home and a work
    directory, with its daemon on an ephemeral loopback HTTP port."""

    def __init__(self, root: Path):
        self.root = root
        self.home = root / "home"
        self.work = root / "work"
        self.home.mkdir()
        self.work.mkdir()
        self.binary = studio_binary()
        if not self.binary.exists():
            raise FileNotFoundError(
                f"{self.binary} is missing: build it with `cargo build --workspace` "
                "or set STUDIO_BIN"
            )
        self.env = {
            name: value
            for name, value in os.environ.items()
            if name not in ("STUDIOML_HOME", "STUDIOML_SOCKET", "XDG_RUNTIME_DIR")
        }
        self.env.update(
            HOME=str(self.home),
            STUDIOML_HTTP="127.0.0.1:0",
            AWS_EC2_METADATA_DISABLED="true",
        )
        self._address = None

    def run(self, *args: str) -> str:
        """Runs `studio ARGS` and returns its standard output."""
        result = subprocess.run(
            [str(self.binary), *args],
            cwd=self.work,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert result.returncode == 0, (
            f"studio {args} exited with {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        return result.stdout

    def write(self, name: str, text: str) -> Path:
        path = self.work / name
        path.write_text(text)
        return path

    def detach(self, *args: str) -> str:
        """Starts `studio run --detach ARGS` and returns the key."""
        return self.run("run", "--detach", *args).strip()

    @property
    def dashboard_url(self) -> str:
        """The address `studio ui` prints, with the dashboard token."""
        return self.run("ui").strip()

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT` of the daemon's HTTP port."""
        if self._address is None:
            url = self.dashboard_url.removeprefix("http://")
            self._address = url.split("/")[0]
        return self._address

    @property
    def url(self) -> str:
        return f"http://{self.address}/"

    def get(self, path: str):
        """GETs an API path and returns (status, decoded JSON or text)."""
        request = urllib.request.Request(f"http://{self.address}{path}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return response.status, decode(response)
        except urllib.error.HTTPError as error:
            return error.code, decode(error)

    def experiment(self, key: str):
        status, body = self.get(f"/api/v1/experiments/{key}")
        return body if status == 200 else None

    def stop(self):
        subprocess.run(
            [str(self.binary), "daemon", "stop"],
            cwd=self.work,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TIMEOUT,
        )


def decode(response):
    body = response.read().decode()
    if "json" in (response.headers.get("Content-Type") or ""):
        return json.loads(body)
    return body


def wait_until(what: str, condition, timeout: float = TIMEOUT, explain=None):
    """Polls `condition` until it returns a true value and returns that.
    After `timeout` seconds the test fails with a message that names what
    was awaited and adds what `explain()` returns."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            details = f": {explain()}" if explain else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{details}")
        time.sleep(0.1)


@pytest.fixture
def studio():
    root = Path(tempfile.mkdtemp(prefix="studio-browser-"))
    installation = Studio(root)
    try:
        yield installation
    finally:
        keys = []
        try:
            keys = installation.run("runs", "list", "all", "--short").split()
        except AssertionError:
            pass
        if keys:
            subprocess.run(
                [str(installation.binary), "runs", "kill", *keys],
                cwd=installation.work,
                env=installation.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=TIMEOUT,
            )
        installation.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver")
    assert chromium and chromedriver, (
        "chromium or chromedriver is missing: install them with "
        "`apt-get install chromium chromium-driver` (scripts/test.sh does)"
    )
    profile = tempfile.mkdtemp(prefix="studio-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
