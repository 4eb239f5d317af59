#!/usr/bin/env bash
# The ONNX runtime (int8 text tower) beside the PyTorch one (float32), same model folder, same
# clips, one thread each: `voice-router eval` on the real-speech sets. Writes one eval JSON per
# runtime and set into OUT, then prints top-1 / accuracy / p50 latency side by side.
#   bash scripts/compare_runtimes.sh [MODEL] [OUT]     (~25 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-default}
OUT=${2:-benchmarks/results/runtimes}
D=${DATA_ROOT:-../shared/data}
PY=${PYTHON:-python}
mkdir -p "$OUT"
IDX=$(mktemp -d)
trap 'rm -rf "$IDX"' EXIT
for rt in onnx torch; do
  run() {  # NAME ROUTES MANIFEST
    VOICE_ROUTER_RUNTIME=$rt "$PY" -m voice_router.cli eval --routes "$2" \
      --data "$3" --model "$MODEL" --index "$IDX/$rt" --threads 1 --json > "$OUT/${rt}_$1.json"
  }
  for set in rhasspy_en ha_commands_en wake_phrases; do
    run "$set" "benchmarks/manifests/$set.yaml" "$D/$set/manifest.csv"
  done
  run speech_commands_test benchmarks/manifests/speech_commands.yaml \
    benchmarks/manifests/speech_commands_test.csv
done
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print(f"{'set':<22}{'runtime':<8}{'top1':>7}{'acc':>7}{'p50 ms':>9}")
for s in ("rhasspy_en", "ha_commands_en", "wake_phrases", "speech_commands_test"):
    for rt in ("onnx", "torch"):
        d = json.loads((out / f"{rt}_{s}.json").read_text())
        print(f"{s:<22}{rt:<8}{d['top1_accuracy']:>7.4f}{d['accuracy']:>7.4f}"
              f"{d['latency_ms']['p50']:>9.1f}")
PY
