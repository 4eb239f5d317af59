#!/usr/bin/env bash
# The head comparison of the bundled model's card: the seed recipe's shape (projected frames
# through the frozen all-MiniLM-L6-v2 backbone, mean pool) against pooling heads (attention,
# mean) over the same cached Whisper tiny.en frames, at equal steps and batch, one CPU thread
# each. Prints scripts/eval_speech.py's real-speech figures for each (zero-shot, route text).
# Needs the feature cache (python -m training.speech_cache build). ~25 min on one core.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-300}
BATCH=${BATCH:-48}
mkdir -p runs
for head in attn mean backbone; do
    run=runs/cmp_${head}_${STEPS}
    python -m training.speech_head train --run "$run" \
        --config "training/configs/whisper_tiny_${head}.json" --steps "$STEPS" \
        --batch "$BATCH" --threads 1 --eval-every "$STEPS" --ckpt-every "$STEPS" \
        --max-frames 300 >"$run.log" 2>&1 || { tail -5 "$run.log"; exit 1; }
    secs=$(tail -1 "$run/metrics.jsonl" | python -c 'import json, sys; print(json.load(sys.stdin)["secs"])')
    echo "== $head: ${secs} s of training"
    python scripts/eval_speech.py --run "$run" 2>/dev/null
done
