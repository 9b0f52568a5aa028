#!/usr/bin/env bash
# README command 2: set up, then the whole test suite (CI runs exactly this via .ci/run).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
# static security lint (bandit; settings and skipped checks in pyproject.toml [tool.bandit])
.venv/bin/python -m bandit -q -c pyproject.toml -r anqi_contract edge central_sync || { echo "test: bandit found issues" >&2; exit 1; }
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
if [ "$rc" = 5 ]; then echo "test: pytest collected no tests" >&2; exit 1; fi
exit $rc
