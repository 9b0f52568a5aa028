#!/usr/bin/env bash
# README command 1: set up, then run the edge daemon end to end on a real clip.
#   bash scripts/demo.sh                       # the shipped clip anqi_tools/demo/bikelane-cyclists.mp4 (MIT)
#   bash scripts/demo.sh --source rtsp://...   # or a file, or /dev/video0
# No broker configured -> the daemon starts the project's own local mosquitto.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SOURCE=""
CONFIG="config/examples/bikelane-cyclists.yaml"
while (($#)); do
  case "$1" in
    --source) SOURCE="$2"; shift 2 ;;
    --config) CONFIG="$2"; shift 2 ;;
    *) echo "usage: scripts/demo.sh [--source FILE|URL|/dev/videoN] [--config CONFIG]" >&2; exit 2 ;;
  esac
done
if [ -z "$SOURCE" ]; then
  SOURCE="anqi_tools/demo/bikelane-cyclists.mp4"   # shipped with its MIT notice: needs nothing beside the checkout
  [ -f "$SOURCE" ] || { echo "demo: $SOURCE not found; give --source FILE|URL|/dev/videoN" >&2; exit 2; }
fi
exec .venv/bin/anqi-edge run --config "$CONFIG" --source "$SOURCE" --until-eof
