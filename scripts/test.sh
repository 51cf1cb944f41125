#!/usr/bin/env bash
# Runs Studio's whole test suite on a fresh machine: installs what the tests
# need, checks formatting and lints, builds the binaries, and runs the Rust
# and Python tests. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Tests and examples must never look for cloud credentials on metadata
# addresses.
export AWS_EC2_METADATA_DISABLED=true

echo "== Python environment for experiments and Python tests (.venv)"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
# Experiments started by the tests run the python3 found on PATH.
export PATH="$PWD/.venv/bin:$PATH"

echo "== Chromium and chromedriver for the dashboard's browser tests"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    # Debian's packages; a user other than root needs sudo for them.
    as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        as_root=(sudo)
    fi
    "${as_root[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== cargo build"
cargo build --workspace --quiet

echo "== cargo test"
cargo test --workspace --quiet

if [ -d python/tests ]; then
    echo "== pytest"
    python -m pytest python/tests -q
fi

echo "== browser tests of the dashboard (headless Chromium)"
python -m pytest tests/browser -q
