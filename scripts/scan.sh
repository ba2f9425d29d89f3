#!/usr/bin/env bash
# Install technic into .venv and scan the embedded synthetic market (no network, no API key).
# The first run builds the local store (a few seconds); later runs read it.
# Extra arguments go to `technic scan` (e.g. `bash scripts/scan.sh --top 20 --sector Energy`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
exec .venv/bin/technic scan "$@"
