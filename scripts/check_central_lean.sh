#!/usr/bin/env bash
# Proves the central side needs no camera runtime: a fresh venv in a temporary folder gets
# `pip install .[central,test]` (a built copy, not the checkout), then runs tests/central from outside the
# checkout. Fails if onnxruntime, OpenCV, PyAV, gpiozero or sounddevice got installed, or a test fails.
# Tests that drive the edge side's runtime (edge -> central end to end with real face models) skip with
# the reason "needs the edge extra"; the script prints how many.
# Takes a few minutes (mostly pip). Usage: bash scripts/check_central_lean.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
PY=${PYTHON:-python3}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/anqi-central-lean.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "central-lean: fresh venv in $tmp"
$PY -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
# a copy of the tree without .venv / build outputs, so pip builds from what git tracks
git ls-files -z --cached --others --exclude-standard | tar -C "$repo" --null -T - -cf - | tar -C "$tmp" -xf - --one-top-level=src
echo "central-lean: pip install .[central,test]"
"$tmp/venv/bin/python" -m pip install -q "$tmp/src[central,test]" 2>&1 | grep -v -e "^WARNING: Location" -e "^ *$" || true

echo "central-lean: installed distributions:"
"$tmp/venv/bin/python" -m pip list --format=freeze | sed 's/^/  /' | tr '\n' ' '; echo
"$tmp/venv/bin/python" - <<'PY'
import importlib.util, sys
present = [m for m in ("cv2", "onnxruntime", "av", "gpiozero", "sounddevice") if importlib.util.find_spec(m)]
if present:
    sys.exit(f"central-lean: FAILED: the camera runtime got installed: {present}")
print("central-lean: no onnxruntime / OpenCV / PyAV / gpiozero / sounddevice in the venv")
PY

# tests from a copy outside the checkout, so `central_sync` and `anqi_contract` come from the install
mkdir -p "$tmp/run" && cp -r "$tmp/src/tests" "$tmp/src/pytest.ini" "$tmp/src/config" "$tmp/run/"
cd "$tmp/run"
set +e
ANQI_HOME="$repo" "$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider -rs tests/central "$@" | tee "$tmp/pytest.log"
rc=${PIPESTATUS[0]}
set -e
skipped=$(grep -c "needs the edge extra" "$tmp/pytest.log" || true)
echo "central-lean: pytest exit $rc; skip lines naming the edge extra: $skipped"
exit "$rc"
