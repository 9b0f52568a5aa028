#!/usr/bin/env bash
# Train two detector candidates side by side on one lent GPU (the workplace's `device` tool), at
# 1280 px, the width of thaigate's 720p frames (1080p ones are scaled to it):
#   s1280   from scratch, the committed recipe (yolov8n.yaml, thaigate x2) at imgsz 1280
#   ft1280  the committed anqi-rider-head (rebuilt from its ONNX file) fine-tuned at imgsz 1280,
#           thaigate x4, AdamW 2e-4 cosine, no warm-up
# Here, before the call (the copy that travels must fit 64 MiB with the working tree):
#   .train/bin/python models/train/prepare_data.py --out .gpudata/det --width 1280 --format webp --quality 80 --val-keep 4
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl ultralytics==8.4.190 ultralytics-thop ultralytics-platform
# The call: run(command="MIN=7 SLACK_S=130 bash models/train/device_train.sh", carry=[".gpudata", ".whl"], timeout_s=580)
# Back here: export each $OUT/<run>.pt with export_detector.py --weights ... --out models/build/<run>.onnx,
# then models/train/trial.py and benchmarks/accuracy.py at detect.input_width 1280.
# On a machine with ultralytics installed and no $OUT, it runs as it is (OUT defaults to models/build/device).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-models/build/device}
MIN=${MIN:-6.5}
DEVICE=${DEVICE:-0}
mkdir -p "$OUT"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 YOLO_OFFLINE=1
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
$PY -c "import torch, ultralytics; print('torch', torch.__version__, 'ultralytics', ultralytics.__version__, 'cuda', torch.cuda.is_available())" || exit 1
D=.gpudata/det
[ -f $D/det.yaml ] || { echo "missing $D/det.yaml (prepare_data.py --out .gpudata/det ...)"; exit 1; }
awk '{print} /thaigate/{print}' $D/train.txt > $D/train4.txt
sed 's/^train: train.txt$/train: train4.txt/' $D/det.yaml > $D/det4.yaml
$PY models/train/from_onnx.py --out /tmp/fused.pt 2>&1 | tail -n 3 || exit 1
budget=$(awk -v m="$MIN" -v s="${SLACK_S:-150}" 'BEGIN{print int(m*60+s)}')   # the time box plus start-up and the final check
timeout "$budget" $PY models/train/train_detector.py --data $D/det.yaml --model yolov8n.yaml --device "$DEVICE" \
    --minutes "$MIN" --imgsz 1280 --workers 8 --batch 32 --project /tmp/runs --name s1280 > "$OUT/s1280.log" 2>&1 &
timeout "$budget" $PY models/train/finetune_detector.py --weights /tmp/fused.pt --data $D/det4.yaml --device "$DEVICE" \
    --minutes "$MIN" --epochs 60 --close-mosaic 6 --lr 2e-4 --imgsz 1280 --batch 32 --workers 6 \
    --project /tmp/runs --name ft1280 > "$OUT/ft1280.log" 2>&1 &
wait
for r in s1280 ft1280; do
    tail -c 1500 "$OUT/$r.log"
    cp /tmp/runs/$r/weights/last.pt "$OUT/$r.pt" 2>/dev/null || echo "$r: no weights"
    cp /tmp/runs/$r/results.csv "$OUT/$r.csv" 2>/dev/null || true
done
ls -la "$OUT"
