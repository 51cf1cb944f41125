#!/usr/bin/env bash
# Builds Studio and runs the linear-regression example through it, with the
# embedded defaults and no cloud account. Usage: scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r examples/requirements.txt
# `studio run` runs the python3 found on PATH, here the one with numpy.
export PATH="$PWD/.venv/bin:$PATH"

cargo build --workspace --quiet
studio="${CARGO_TARGET_DIR:-target}/debug/studio"
echo "== studio run examples/general/train_linreg.py"
"$studio" run examples/general/train_linreg.py
echo "== studio runs list"
"$studio" runs list
