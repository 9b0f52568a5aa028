#!/usr/bin/env bash
# README command 2: set up, then the gates, then the whole test suite (CI runs exactly this via .ci/run).
#   bash scripts/test.sh [pytest args]
# Gates (settings in pyproject.toml, hooks in .pre-commit-config.yaml): ruff lint, ruff format, mypy, bandit.
# Any finding stops the run before pytest; the message names the gate and the command that fixes or
# reproduces it.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

echo "test: gates (ruff check, ruff format --check, mypy, bandit) via .venv/bin/pre-commit run --all-files"
if ! .venv/bin/pre-commit run --all-files --color never; then
  cat >&2 <<'MSG'
test: a gate FAILED (see the hook marked Failed above); nothing was tested. Reproduce or fix:
  .venv/bin/ruff check --fix .        # lint (safe fixes applied; the rest are listed)
  .venv/bin/ruff format .             # formatting (line length 110)
  .venv/bin/mypy                      # types (files and strictness in pyproject.toml)
  .venv/bin/python -m bandit -q -c pyproject.toml -r anqi_contract anqi_tools edge central_sync
  .venv/bin/pre-commit run --all-files   # all four, exactly as here
MSG
  exit 1
fi

.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
if [ "$rc" = 5 ]; then echo "test: pytest collected no tests" >&2; exit 1; fi
exit $rc
