#!/usr/bin/env bash
# Install everything the tests need into .venv, then run ruff, mypy and the whole pytest suite.
# This is the command README gives a newcomer and the one CI runs (.ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# System packages the tests start for real (a Redis server on a loopback port).
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# The web page is tested in a real headless Chromium (driven by Playwright, never downloaded).
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing system packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
fi
# Editable install with pinned test extras: pip runs only when pyproject.toml or the checkout's
# location changed since the last install (source edits need no reinstall).
stamp=.venv/.technic-install-test
want="$(pwd) $(cksum < pyproject.toml)"
if [ ! -x .venv/bin/pytest ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # Before 0.1.0 was renamed technic-scanner it was installed as "technic": drop that record.
  if compgen -G ".venv/lib/python*/site-packages/technic-*.dist-info" >/dev/null; then
    .venv/bin/python -m pip uninstall --quiet --yes technic
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
  printf '%s
' "$want" > "$stamp"
fi
echo "== ruff"
.venv/bin/ruff check src tests
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
