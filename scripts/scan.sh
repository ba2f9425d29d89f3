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
# The install is editable, so source edits need no reinstall: pip runs only when pyproject.toml
# (dependencies, entry points) or the checkout's location changed since the last install.
stamp=.venv/.technic-install
want="$(pwd) $(cksum < pyproject.toml)"
if [ ! -x .venv/bin/technic ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # Before 0.1.0 was renamed technic-scanner it was installed as "technic": drop that record.
  if compgen -G ".venv/lib/python*/site-packages/technic-*.dist-info" >/dev/null; then
    .venv/bin/python -m pip uninstall --quiet --yes technic
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
  printf '%s\n' "$want" > "$stamp"
fi
exec .venv/bin/technic scan "$@"
